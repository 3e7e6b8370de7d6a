package openai

import (
	"cmp"
	"encoding/json"

	"github.com/cocoonhost/cocoon/host/backend"
)

// modelList is GET /models as the servers send it: OpenAI's list, plus the context
// window in the first of vLLM's and SGLang's max_model_len (the server's limit), the
// context_length of others, and llama.cpp's meta.n_ctx_train.
type modelList struct {
	Data []struct {
		ID            string `json:"id"`
		OwnedBy       string `json:"owned_by"`
		MaxModelLen   int    `json:"max_model_len"`
		ContextLength int    `json:"context_length"`
		Meta          struct {
			NCtxTrain int `json:"n_ctx_train"`
		} `json:"meta"`
	} `json:"data"`
}

func parseModels(data []byte) ([]backend.Model, error) {
	var list modelList
	// Data is nil when the member is missing: the answer of something that is not an
	// OpenAI API.
	if err := json.Unmarshal(data, &list); err != nil || list.Data == nil {
		return nil, backend.Errorf(backend.CodeUpstream, "inference server sent no model list")
	}
	models := make([]backend.Model, 0, len(list.Data))
	for _, m := range list.Data {
		if m.ID == "" {
			continue
		}
		models = append(models, backend.Model{
			ID:            m.ID,
			OwnedBy:       m.OwnedBy,
			ContextLength: max(cmp.Or(m.MaxModelLen, m.ContextLength, m.Meta.NCtxTrain), 0),
		})
	}
	return models, nil
}
