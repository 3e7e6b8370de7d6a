package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
)

// Config configures a Server. Backend, Sandbox, Store, Registry and at least one
// credential (APIKeys or TelegramBotToken) are required; zero values of the rest take
// the defaults their comments give.
type Config struct {
	Backend  backend.Backend
	Sandbox  *host.Sandbox
	Store    *host.Store
	Registry *host.Registry

	// APIKeys are the accepted API keys; see APIKey.
	APIKeys []APIKey
	// TelegramBotToken, when set, lets Mini Apps of this bot call with their init data.
	TelegramBotToken string
	// TelegramMaxAge is how old init data may be (its auth_date). Default 24 hours.
	TelegramMaxAge time.Duration

	// MaxGenerations bounds the chat completions running at once; the next one gets
	// 429 with Retry-After. Default: the number of CPUs.
	MaxGenerations int
	// MaxRequestBytes bounds a chat completion body. Default 4 MiB.
	MaxRequestBytes int64
	// MaxUploadBytes bounds a pipeline upload body (base64 modules included).
	// Default 64 MiB.
	MaxUploadBytes int64
	// MaxUploads bounds the pipeline uploads received at once, each holding up to
	// three quarters of MaxUploadBytes; the next one gets 429 with Retry-After.
	// Default 2.
	MaxUploads int

	// Attestation, when set, serves GET /v1/attestation and
	// GET /v1/pipelines/{id}/attestation and signs every chat response with its host key.
	// Without it those routes answer 404 and responses carry no signature.
	Attestation *attest.Host
	// MaxQuotesPerSecond bounds the fresh quotes of pipeline evidence, host-wide
	// (quotes are slow on TDX); bursts may reach the same number. Default 2.
	MaxQuotesPerSecond int

	// Billing, when set, bills every chat completion to a TON escrow account (see
	// package settle): requests are admitted against the escrow's balance, each answer
	// carries a signed receipt, and GET /v1/pricing and /v1/accounts/{account} are
	// served. Without it, requests are not billed and those routes answer 404.
	Billing *settle.Service

	// Logger gets operators' logs: internal errors, backend failures. Default: none.
	Logger *slog.Logger
}

// Server is the HTTP API of a Cocoon host. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	keys    keyring
	slots   chan struct{} // one per running generation
	uploads chan struct{} // one per upload being received
	bare    *host.Pipeline
	metrics *metrics
	quotes  *tokenBucket
	windows sync.Map // model -> context length, see contextWindow
	handler http.Handler
	http    *http.Server
}

// New checks cfg and returns a server. It does no I/O.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Backend == nil || cfg.Sandbox == nil || cfg.Store == nil || cfg.Registry == nil:
		return nil, errors.New("web: Backend, Sandbox, Store and Registry are required")
	case len(cfg.APIKeys) == 0 && cfg.TelegramBotToken == "":
		return nil, errors.New("web: no credentials: configure an API key or a Telegram bot token")
	}
	for _, k := range cfg.APIKeys {
		if k.Name == "" || k.Key == "" {
			return nil, errors.New("web: an API key needs a name and a key")
		}
		if k.Account != "" {
			if _, err := settle.ParseAccount(k.Account); err != nil {
				return nil, fmt.Errorf("web: API key %q: account: %v", k.Name, err)
			}
		}
	}
	if cfg.TelegramMaxAge <= 0 {
		cfg.TelegramMaxAge = 24 * time.Hour
	}
	if cfg.MaxGenerations <= 0 {
		cfg.MaxGenerations = runtime.NumCPU()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 4 << 20
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 64 << 20
	}
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = 2
	}
	if cfg.MaxQuotesPerSecond <= 0 {
		cfg.MaxQuotesPerSecond = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// The bare backend is served through an empty pipeline, so that requests to it
	// are checked, run and answered exactly as through any other.
	bare, err := cfg.Sandbox.NewPipeline(host.PipelineSpec{})
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		keys:    newKeyring(cfg.APIKeys),
		slots:   make(chan struct{}, cfg.MaxGenerations),
		uploads: make(chan struct{}, cfg.MaxUploads),
		bare:    bare,
		metrics: newMetrics(),
		quotes:  newTokenBucket(cfg.MaxQuotesPerSecond),
	}
	s.handler = s.routes()
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// No write timeout: streams last as long as generation does.
		IdleTimeout: 2 * time.Minute,
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.metrics.instrument, s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusNotFound, typeNotFound, "not_found", "no route for %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusMethodNotAllowed, typeInvalidRequest, "method_not_allowed", "%s is not allowed on %s", r.Method, r.URL.Path))
	})
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.handler())
	r.Get("/v1/attestation", s.bootAttestation)
	r.Get("/v1/pricing", s.pricing)

	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)
		r.Get("/v1/models", s.listModels)
		r.Post("/v1/chat/completions", s.chatCompletions)
		r.Get("/v1/pipelines", s.listPipelines)
		r.Get("/v1/pipelines/{id}", s.getPipeline)
		r.Get("/v1/pipelines/{id}/attestation", s.pipelineAttestation)
		r.Get("/v1/accounts/{account}", s.account)
		r.Get("/v1/accounts/{account}/receipts", s.receipts)
		r.With(s.requireOwner).Post("/v1/pipelines", s.uploadPipeline)
		r.With(s.requireOwner).Delete("/v1/pipelines/{id}", s.deletePipeline)
		// Flat routes, not a mounted subrouter: metrics label requests by the full
		// pattern, also those refused before routing would reach a subrouter.
		r.With(s.withPipeline).Get("/p/{id}/v1/models", s.pipelineModels)
		r.With(s.withPipeline).Post("/p/{id}/v1/chat/completions", s.chatCompletions)
	})
	return r
}

// Handler returns the server's routes, for callers that run their own http.Server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on l until Shutdown; it then returns http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error { return s.http.Serve(l) }

// Shutdown stops accepting connections and waits, until ctx is done, for requests in
// flight (streams included) to finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// recoverer turns a panic in a handler into a 500 in the OpenAI error shape, and logs it.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// acquire takes a generation slot without waiting; release gives it back.
func (s *Server) acquire() (release func(), err error) {
	select {
	case s.slots <- struct{}{}:
		s.metrics.generations.Inc()
		s.observeLoad()
		return func() {
			<-s.slots
			s.metrics.generations.Dec()
			s.observeLoad()
		}, nil
	default:
		e := errorf(http.StatusTooManyRequests, typeRateLimit, "over_capacity",
			"the host is at capacity (%d generations running): retry shortly", cap(s.slots))
		e.RetryAfter = 1
		return nil, e
	}
}

// observeLoad feeds the generation slots in use to the pricer's load coefficient.
func (s *Server) observeLoad() {
	if s.cfg.Billing != nil {
		s.cfg.Billing.Pricer().Observe(len(s.slots), cap(s.slots))
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the backend can serve, 503 otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Backend.Health(ctx); err != nil {
		e := s.toAPIError(r, err)
		e.Status = http.StatusServiceUnavailable
		s.writeError(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
