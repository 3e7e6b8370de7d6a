package web

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
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

// listModels answers GET /v1/models: the backend's models, as admission last read
// them (modelWindows.list): the route needs no credential, so a flood of it reads the
// backend's list at most once a modelsTTL. Its context_length is informative only:
// what admission prices is in the signed price list (GET /v1/pricing).
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	models, err := s.models.list(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, modelList(models))
}

// modelList is the answer to GET /v1/models listing models.
func modelList(models []backend.Model) listJSON[modelJSON] {
	out := listJSON[modelJSON]{Object: "list", Data: []modelJSON{}}
	for _, m := range models {
		out.Data = append(out.Data, toModelJSON(m))
	}
	return out
}

// pipelineModels answers GET /p/{id}/v1/models: the one model the pipeline serves.
func (s *Server) pipelineModels(w http.ResponseWriter, r *http.Request) {
	models, _ := s.models.list(r.Context()) // none: the model without its window
	writeJSON(w, http.StatusOK, pipelineModelList(pipelineOf(r.Context()).Manifest.Model, models))
}

// pipelineModelList is the answer to GET /p/{id}/v1/models for a pipeline of model
// when the backend lists models: the model, with what the backend knows of it (its
// context length) when it lists it, as admission reads it (the first entry under that
// id, modelWindows.store).
func pipelineModelList(model string, models []backend.Model) listJSON[modelJSON] {
	out := listJSON[modelJSON]{Object: "list", Data: []modelJSON{{ID: model, Object: "model", OwnedBy: "cocoon"}}}
	if i := slices.IndexFunc(models, func(m backend.Model) bool { return m.ID == model }); i >= 0 {
		out.Data[0] = toModelJSON(models[i])
	}
	return out
}

// modelsTTL is how long the backend's model list is trusted for context windows.
const modelsTTL = time.Minute

// modelsReadTimeout bounds one read of the backend's model list. The read is shared
// (its caller's waiters use what it reads), so it runs on no caller's context: a
// client hanging up must not end it, which would leave everyone the previous list
// (and its windows in the price list) for modelsRetry, and a client doing so each
// time, forever.
const modelsReadTimeout = 10 * time.Second

// modelsRetry is how long after a failed read of the backend's model list the next
// read waits: GET /v1/models needs no credential, and without it a flood of them
// while the backend failed read its list once per request.
const modelsRetry = time.Second

// defaultContextTokens bounds a prompt for admission when the backend does not say how
// long its model's context is.
const defaultContextTokens = settle.DefaultContextWindow

// modelWindows knows the context window of each model the backend serves, from its
// model list, read again at most every modelsTTL: admission needs the window of every
// billed request, and listing models may be a network call. It keeps the served models
// only, so that clients naming made-up models grow nothing. It is safe for concurrent
// use.
//
// It is the one source of the windows: a billing host's admission prices them, and
// publish (billing.Pricer.SetWindows) puts them in the signed price list clients cap
// their requests with, each time a list is read.
type modelWindows struct {
	backend backend.Backend
	// publish, when set, is given the windows of every list read (signed).
	publish func(settle.Windows) error
	mu      sync.Mutex
	windows map[string]int // model id → context length; "" → the first model's
	first   string         // the first model's id: what the backend serves for ""
	models  []backend.Model
	read    time.Time
	// failed is when a read last failed, and failure its error: no read is tried
	// again within modelsRetry of it.
	failed  time.Time
	failure error
	// refreshing is set while one caller reads the list again; the others use the
	// previous one meanwhile.
	refreshing bool
}

// window returns model's context length in tokens: the backend's figure for a model it
// lists ("" is its first), with reported set, else defaultContextTokens. Until a first
// list is read every caller waits for it; after that one caller at a time reads a newer
// one. A failed read is tried again by the first caller modelsRetry after it; until
// then callers have the list read before, or none.
func (m *modelWindows) window(ctx context.Context, model string) (n int, reported bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fresh(ctx)
	if n := m.windows[model]; n > 0 {
		return n, true
	}
	return defaultContextTokens, false
}

// list returns the backend's models as window reads them, or the error of the read
// when no list was ever read.
func (m *modelWindows) list(ctx context.Context) ([]backend.Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fresh(ctx); err != nil {
		return nil, err
	}
	return slices.Clone(m.models), nil
}

// fresh reads the list as window says, with m.mu held; it returns the read's error
// when there is no list at all.
func (m *modelWindows) fresh(ctx context.Context) error {
	switch {
	case time.Since(m.failed) < modelsRetry:
		if m.windows == nil {
			return m.failure
		}
	case m.windows == nil:
		models, err := m.readList(ctx)
		m.store(models, err)
		return err
	case time.Since(m.read) >= modelsTTL && !m.refreshing:
		m.refreshing = true
		m.mu.Unlock()
		models, err := m.readList(ctx)
		m.mu.Lock()
		m.refreshing = false
		m.store(models, err)
	}
	return nil
}

// readList reads the backend's model list for ctx's caller and those waiting on it,
// within modelsReadTimeout whether or not the caller goes away.
func (m *modelWindows) readList(ctx context.Context) ([]backend.Model, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), modelsReadTimeout)
	defer cancel()
	return m.backend.Models(ctx)
}

// name is the model a request for model is answered by: model, or for "" the backend's
// first, which it serves when none is named; "" when the backend lists none. Stream
// chunks name it before the backend's result does. Cost: window's.
func (m *modelWindows) name(ctx context.Context, model string) string {
	if model != "" {
		return model
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fresh(ctx)
	return m.first
}

// sync reads the backend's list again if modelsTTL has passed since the last read
// (fresh), so that a price list made next carries the windows admission reads now.
func (m *modelWindows) sync(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fresh(ctx)
}

// store keeps a list just read, unless reading it failed (then it notes when), and
// publishes its windows. A model listed twice has the window it is first listed with,
// the one the signed list gives it: a client's max_price and admission's worst case
// read one window. A window over settle.MaxContextWindow is cut to it, and a model the
// price list cannot carry has the default, for admission as in the list: one whose
// name a list cannot hold (settle.ListableModel: the backend's unnamed "" model, a name
// over manifest.MaxModelBytes, which no pipeline runs either, or not UTF-8), or listed
// after the windows before it filled settle.MaxWindowsBytes.
func (m *modelWindows) store(models []backend.Model, err error) {
	if err != nil {
		m.failed, m.failure = time.Now(), err
		return
	}
	m.windows, m.models, m.read = make(map[string]int, len(models)+1), models, time.Now()
	signed := settle.SameWindow(defaultContextTokens)
	var size settle.WindowsSize
	for i, md := range models {
		if _, listed := m.windows[md.ID]; listed {
			continue // the window of its first entry, the one signed
		}
		window := 0 // the default's, unless the signed list carries its own
		if n := min(max(md.ContextLength, 0), settle.MaxContextWindow); n > 0 && settle.ListableModel(md.ID) {
			if entry := (settle.ModelWindow{Model: md.ID, Tokens: uint64(n)}); size.Fits(entry) {
				window = n
				signed.Models = append(signed.Models, entry)
			}
		}
		if i == 0 {
			m.windows[""], m.first = window, md.ID
		}
		m.windows[md.ID] = window
	}
	if m.publish != nil {
		slices.SortFunc(signed.Models, func(a, b settle.ModelWindow) int { return strings.Compare(a.Model, b.Model) })
		// Cannot fail: every name is listable, once, every window 1 to
		// settle.MaxContextWindow, and all of them within settle.MaxWindowsBytes.
		if err := m.publish(signed); err != nil {
			panic("web: the model windows do not make a price list: " + err.Error())
		}
	}
}
