package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/host"
)

// pipelineJSON is how the API shows a pipeline.
type pipelineJSON struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	// BaseURL is the path an OpenAI SDK takes as its base URL, relative to the host.
	BaseURL string `json:"base_url"`
	// Manifest is canonical: every limit filled in, configs compact.
	Manifest *host.Manifest `json:"manifest"`
	// Modules are the hashes of the modules, pre then post, each once.
	Modules []string `json:"modules"`
}

func toPipelineJSON(e *host.Entry) pipelineJSON {
	return pipelineJSON{ID: e.ID, Object: "pipeline", Created: e.Created.Unix(), BaseURL: "/p/" + e.ID + "/v1",
		Manifest: e.Manifest, Modules: e.Manifest.Modules()}
}

// uploadPipeline answers POST /v1/pipelines: 201 with the pipeline for a new one, 200
// when the same pipeline was already registered (its id is the same; the caller joins
// its owners). Every refusal is a 4xx naming the module and the reason: 400 for what is
// wrong with the upload, 413 for a body over MaxUploadBytes, and 429 with Retry-After
// when MaxUploads uploads are already being received or the host's compile pool is
// full.
func (s *Server) uploadPipeline(w http.ResponseWriter, r *http.Request) {
	entry, created, err := s.upload(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, toPipelineJSON(entry))
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) (*host.Entry, bool, error) {
	// The slot is taken before the body is read: a body may be 64 MiB, and its modules
	// are held until they are compiled.
	release, err := s.acquireUpload()
	if err == nil && r.ContentLength > s.cfg.MaxUploadBytes {
		release()
		err = bodyTooLarge(s.cfg.MaxUploadBytes)
	}
	if err != nil {
		// Answer without reading the body: the server would read up to 256 KiB of it
		// first, and wait for a client that sends nothing.
		w.Header().Set("Connection", "close")
		return nil, false, err
	}
	defer release()
	var m *host.Manifest
	up, err := decodeUpload(http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes), func(b []byte) error {
		var err error
		if m, err = host.ParseManifest(b); err != nil {
			return err
		}
		return s.checkModel(r.Context(), m.Model)
	})
	if err != nil {
		return nil, false, bodyError(err, s.cfg.MaxUploadBytes, 0)
	}
	if m == nil {
		return nil, false, invalidf(`upload: no "manifest" member`)
	}
	if err := checkModules(m, up.modules); err != nil {
		return nil, false, err
	}
	// Compiling is the slow step; it happens once per module, here, never per request.
	for _, hash := range m.Modules() {
		if b, ok := up.modules[hash]; ok {
			if _, err := s.cfg.Store.Put(r.Context(), b); err != nil {
				return nil, false, moduleError(hash, err)
			}
		}
	}
	return s.cfg.Registry.Add(m, principalOf(r.Context()).ID)
}

// acquireUpload takes an upload slot without waiting; release gives it back.
func (s *Server) acquireUpload() (release func(), err error) {
	select {
	case s.uploads <- struct{}{}:
		return func() { <-s.uploads }, nil
	default:
		e := errorf(http.StatusTooManyRequests, typeRateLimit, "too_many_uploads",
			"the host is receiving %d pipeline uploads at once, its limit: retry shortly", cap(s.uploads))
		e.RetryAfter = 2
		return nil, e
	}
}

// checkModules checks the decoded modules of an upload against the manifest and their
// hashes.
func checkModules(m *host.Manifest, modules map[string][]byte) error {
	used := m.Modules()
	for hash, b := range modules {
		if !slices.Contains(used, hash) {
			return invalidf("modules: %s is not in the manifest", hash)
		}
		if got := host.HashOf(b); got != hash {
			return invalidf("modules: the bytes given for %s hash to %s", hash, got)
		}
	}
	return nil
}

// moduleError names the module in a refusal of the store. A full compile pool is the
// host's capacity, not the module's fault: a rate-limit error with Retry-After.
func moduleError(hash string, err error) error {
	var he *host.Error
	if !errors.As(err, &he) {
		return err
	}
	if he.Code == host.CodeCompileBusy {
		e := errorf(he.Status, typeRateLimit, string(he.Code), "module %s: %s", hash, he.Message)
		e.RetryAfter = he.RetryAfter
		return e
	}
	e := *he
	e.Message = fmt.Sprintf("module %s: %s", hash, he.Message)
	return &e
}

// checkModel refuses a manifest for a model the backend does not serve.
func (s *Server) checkModel(ctx context.Context, model string) error {
	models, err := s.cfg.Backend.Models(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, len(models))
	for i, m := range models {
		if m.ID == model {
			return nil
		}
		ids[i] = fmt.Sprintf("%q", m.ID)
	}
	return invalidf("manifest: model: %q is not served by this host; it serves %s", model, strings.Join(ids, ", "))
}

// listPipelines answers GET /v1/pipelines.
func (s *Server) listPipelines(w http.ResponseWriter, r *http.Request) {
	out := listJSON[pipelineJSON]{Object: "list", Data: []pipelineJSON{}}
	for _, e := range s.cfg.Registry.List() {
		out.Data = append(out.Data, toPipelineJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// getPipeline answers GET /v1/pipelines/{id}.
func (s *Server) getPipeline(w http.ResponseWriter, r *http.Request) {
	e, err := s.lookup(chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPipelineJSON(e))
}

// deletePipeline answers DELETE /v1/pipelines/{id}: it withdraws the caller from the
// pipeline's owners, and removes the pipeline when no owner is left ("deleted": true).
func (s *Server) deletePipeline(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	removed, err := s.cfg.Registry.Delete(id, principalOf(r.Context()).ID)
	switch {
	case errors.Is(err, host.ErrNoPipeline):
		err = noPipeline(id)
	case errors.Is(err, host.ErrNotOwner):
		err = errorf(http.StatusForbidden, typePermission, "not_owner", "pipeline %s was not uploaded with this credential", id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "pipeline.deleted", removed})
}

func noPipeline(id string) *apiError {
	return errorf(http.StatusNotFound, typeNotFound, "pipeline_not_found", "no pipeline with id %q on this host", id)
}

func (s *Server) lookup(id string) (*host.Entry, error) {
	if e, ok := s.cfg.Registry.Get(id); ok {
		return e, nil
	}
	return nil, noPipeline(id)
}

type pipelineKey struct{}

// withPipeline resolves {id} of /p/{id}/v1 routes, answering 404 for an unknown id.
func (s *Server) withPipeline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := s.lookup(chi.URLParam(r, "id"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pipelineKey{}, e)))
	})
}

// pipelineOf returns the pipeline of a /p/{id}/v1 request, nil for the bare backend.
func pipelineOf(ctx context.Context) *host.Entry {
	e, _ := ctx.Value(pipelineKey{}).(*host.Entry)
	return e
}
