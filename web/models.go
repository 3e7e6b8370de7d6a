package web

import (
	"net/http"

	"github.com/cocoonhost/cocoon/host/backend"
)

// modelJSON is a model in the OpenAI models list.
type modelJSON struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	ContextLength int    `json:"context_length,omitempty"`
}

type listJSON[T any] struct {
	Object string `json:"object"`
	Data   []T    `json:"data"`
}

func toModelJSON(m backend.Model) modelJSON {
	return modelJSON{ID: m.ID, Object: "model", OwnedBy: m.OwnedBy, ContextLength: m.ContextLength}
}

// listModels answers GET /v1/models: the backend's models.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	models, err := s.cfg.Backend.Models(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := listJSON[modelJSON]{Object: "list", Data: []modelJSON{}}
	for _, m := range models {
		out.Data = append(out.Data, toModelJSON(m))
	}
	writeJSON(w, http.StatusOK, out)
}

// pipelineModels answers GET /p/{id}/v1/models: the one model the pipeline serves.
func (s *Server) pipelineModels(w http.ResponseWriter, r *http.Request) {
	model := pipelineOf(r.Context()).Manifest.Model
	out := listJSON[modelJSON]{Object: "list", Data: []modelJSON{{ID: model, Object: "model", OwnedBy: "cocoon"}}}
	// The backend knows more about the model (its context length): use it when it can.
	if models, err := s.cfg.Backend.Models(r.Context()); err == nil {
		for _, m := range models {
			if m.ID == model {
				out.Data[0] = toModelJSON(m)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}
