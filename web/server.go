package web

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// Config configures a Server. Backend, Sandbox, Store, Registry and at least one
// credential (APIKeys, TelegramBotToken or TelegramBotID) are required; zero values of the rest take
// the defaults their comments give.
type Config struct {
	Backend  backend.Backend
	Sandbox  *host.Sandbox
	Store    *host.Store
	Registry *host.Registry

	// APIKeys are the accepted API keys; see APIKey.
	APIKeys []APIKey
	// TelegramBotToken, when set, lets Mini Apps of this bot call with their init data,
	// checked with the token (its "hash" field).
	TelegramBotToken string
	// TelegramBotID, when set, lets Mini Apps of this bot call with their init data,
	// checked against Telegram's Ed25519 signature (its "signature" field) by
	// TelegramKey: the host needs no bot token.
	TelegramBotID int64
	// TelegramKey is the key Telegram signs init data with for third parties. Default
	// TelegramProductionKey; TelegramTestKey for Telegram's test environment.
	TelegramKey ed25519.PublicKey
	// TelegramMaxAge is how old init data may be (its auth_date). Default 24 hours.
	TelegramMaxAge time.Duration

	// MaxGenerations bounds the chat completions running at once. Default: the number
	// of CPUs.
	MaxGenerations int
	// MaxWaiting bounds the chat completions that wait for a generation slot, first
	// come first served, once their body is read: a burst waits instead of being
	// refused. Over it, a request gets 429 with Retry-After before its body is read.
	// Each waiting request holds its body (up to MaxRequestBytes) and its connection.
	// Default: 8 per generation slot; negative: none wait.
	MaxWaiting int
	// SlotWait bounds how long a request waits for a slot; it then gets the same 429.
	// Default 30 seconds.
	SlotWait time.Duration
	// MaxRequestBytes bounds a chat completion body. Default 4 MiB.
	MaxRequestBytes int64
	// WriteTimeout bounds every write to a client (a JSON answer, each SSE event): a
	// client that reads nothing for this long (to within a second) is cut, its
	// generation cancelled and its slot freed, and a billed stream is charged only for
	// what was written before. Default 30 s.
	WriteTimeout time.Duration
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
	// AllowedOrigins are the web origins ("https://app.example.com"; "*" for any)
	// whose pages may read the API's answers from a browser (CORS): a Mini App served
	// from its developer's domain that calls the host with web/browser. Empty: pages
	// of other origins may send requests but not read the answers, so an app must be
	// served from the host's origin (cors.go).
	AllowedOrigins []string
	// RequireE2E refuses chat requests that are not sealed to the attested key
	// (web/E2E.md) with a 400: for a host reached only through relays, where a
	// plaintext prompt would cross them. Default false: RA-TLS clients may send
	// plaintext.
	RequireE2E bool
	// MaxQuotesPerSecond bounds the fresh quotes of pipeline evidence, host-wide
	// (quotes are slow on TDX); bursts may reach the same number. One credential gets
	// at most half of that rate and burst (a burst of at least one), so that no client
	// can take them all. Fresh boot evidence (GET /v1/attestation?nonce=), which needs
	// no credential, has a budget of its own of the same rate, half of it per client
	// address: the host takes at most twice this many quotes per second.
	// Default 2.
	MaxQuotesPerSecond int

	// Billing, when set, bills every chat completion to a TON escrow account (see
	// package settle): requests signed with an escrow's client key are accepted, are
	// admitted against the escrow's balance, each answer carries a signed receipt, and
	// GET /v1/pricing and /v1/accounts/{account} are served, and /metrics serves its
	// Collectors. Without it, requests are not billed and those routes answer 404.
	Billing *billing.Service

	// Logger gets operators' logs: internal errors, backend failures, and at level info
	// one access log line per request (see accessLog). Default: none.
	Logger *slog.Logger

	// The rest are settings of the connections Serve accepts.

	// TLS, when set, makes Serve speak TLS with it (under the connection cap, so that
	// handshakes count against it too).
	TLS *tls.Config
	// MaxConnections bounds the connections open at once. Over it Serve closes the
	// connection idle longest, and with none idle answers the new one's request 503 with
	// Retry-After and closes it (a TLS server closes it at once), without ever blocking
	// its accepts. Default: three quarters of the process's RLIMIT_NOFILE, at most 16,384.
	MaxConnections int
	// RequestReadTimeout bounds how long a client may take to send a request, headers
	// and body; a body still arriving then ends the request with a 408 and its
	// connection. Answers are not bounded by it. A chat request's body is read before
	// a generation slot is taken, so a client that dribbles it holds no slot meanwhile. Default 60 seconds (4 MiB at 0.6
	// Mbit/s).
	RequestReadTimeout time.Duration
	// UploadReadTimeout replaces RequestReadTimeout for an owner's POST /v1/pipelines,
	// whose body is larger. Default 10 minutes (64 MiB at 0.9 Mbit/s).
	UploadReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new request for this
	// long. Default 2 minutes.
	IdleTimeout time.Duration
}

// headerTimeout bounds how long a client may take to send a request's headers, and the
// TLS handshake before them.
const headerTimeout = 10 * time.Second

// cutGrace is how long Shutdown waits, once it has cancelled the requests that outlived
// its drain, for them to send their last event and commit their receipt, before it
// closes their connections.
const cutGrace = 5 * time.Second

// errShuttingDown is the cause of the cancellation of requests cut at shutdown.
var errShuttingDown = errors.New("web: the host is shutting down")

// Server is the HTTP API of a Cocoon host. It is safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	keys keyring
	// initData checks Mini Apps' Telegram init data ("Authorization: tma ...").
	initData initDataChecker
	slots    chan struct{} // one per running generation
	waiting  chan struct{} // one per request waiting for a slot
	uploads  chan struct{} // one per upload being received
	bare     *host.Pipeline
	metrics  *metrics
	// requestIDs names requests for the access log and X-Request-Id.
	requestIDs *requestIDs
	quotes     *quoteLimiter // pipeline evidence's, per credential
	// bootQuotes is fresh boot evidence's, per client address: a budget of its own, so
	// that the unauthenticated route cannot spend pipeline evidence's.
	bootQuotes *quoteLimiter
	models     *modelWindows
	// billing is the chat path's billing layer, free when the host does not bill.
	billing biller
	// signer signs the chat routes' answers; nil when the host does not attest.
	signer *answerSigner
	// e2e opens sealed chat requests; nil when the host does not attest.
	e2e *e2eHost
	// observeLoad gets the slots in use after each change: the pricer's load.
	observeLoad func(used, total int)
	handler     http.Handler
	http        *http.Server
	conns       *connTracker
	// failures keeps the module logs of failed requests for pipelines' owners.
	failures *failureLog
	// cut cancels every request's context (their base) with a cause, at shutdown.
	cut context.CancelCauseFunc
}

// New checks cfg and returns a server. It does no I/O.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Backend == nil || cfg.Sandbox == nil || cfg.Store == nil || cfg.Registry == nil:
		return nil, errors.New("web: Backend, Sandbox, Store and Registry are required")
	case len(cfg.APIKeys) == 0 && cfg.TelegramBotToken == "" && cfg.TelegramBotID == 0:
		return nil, errors.New("web: no credentials: configure an API key, a Telegram bot token or a Telegram bot id")
	case cfg.TelegramBotID < 0:
		return nil, fmt.Errorf("web: Telegram bot id %d: want a positive number", cfg.TelegramBotID)
	case cfg.TelegramKey != nil && len(cfg.TelegramKey) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("web: Telegram key is %d bytes, want %d", len(cfg.TelegramKey), ed25519.PublicKeySize)
	}
	if err := checkOrigins(cfg.AllowedOrigins); err != nil {
		return nil, fmt.Errorf("web: %w", err)
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
	if cfg.TelegramKey == nil {
		cfg.TelegramKey = TelegramProductionKey
	}
	if cfg.MaxGenerations <= 0 {
		cfg.MaxGenerations = runtime.NumCPU()
	}
	switch {
	case cfg.MaxWaiting == 0:
		cfg.MaxWaiting = 8 * cfg.MaxGenerations
	case cfg.MaxWaiting < 0:
		cfg.MaxWaiting = 0
	}
	if cfg.SlotWait <= 0 {
		cfg.SlotWait = 30 * time.Second
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 4 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
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
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = defaultMaxConnections()
	}
	if cfg.RequestReadTimeout <= 0 {
		cfg.RequestReadTimeout = time.Minute
	}
	if cfg.UploadReadTimeout <= 0 {
		cfg.UploadReadTimeout = 10 * time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	// The bare backend is served through an empty pipeline, so that requests to it
	// are checked, run and answered exactly as through any other.
	bare, err := cfg.Sandbox.NewPipeline(host.PipelineSpec{})
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger,
		keys:        newKeyring(cfg.APIKeys),
		initData:    initDataChecker{botToken: cfg.TelegramBotToken, botID: cfg.TelegramBotID, key: cfg.TelegramKey, maxAge: cfg.TelegramMaxAge},
		slots:       make(chan struct{}, cfg.MaxGenerations),
		waiting:     make(chan struct{}, cfg.MaxWaiting),
		uploads:     make(chan struct{}, cfg.MaxUploads),
		bare:        bare,
		metrics:     newMetrics(cfg.Store, cfg.Registry),
		requestIDs:  newRequestIDs(),
		quotes:      newQuoteLimiter(cfg.MaxQuotesPerSecond, "credential"),
		bootQuotes:  newQuoteLimiter(cfg.MaxQuotesPerSecond, "client address"),
		models:      &modelWindows{backend: cfg.Backend},
		billing:     free{},
		observeLoad: func(int, int) {},
		conns:       newConnTracker(cfg.MaxConnections),
		failures:    newFailureLog(),
	}
	if cfg.Attestation != nil {
		s.signer = &answerSigner{host: cfg.Attestation}
		s.e2e = &e2eHost{
			keys:     cfg.Attestation.E2EKeys(),
			replay:   e2e.NewReplayGuard(e2eWindow, e2eReplayIDs),
			sessions: e2e.NewSessionTable(e2eSessions, e2eSessionsPerPrincipal),
		}
	}
	if cfg.Billing != nil {
		s.billing = escrowBilling{s}
		s.observeLoad = cfg.Billing.Pricer().Observe
		// The signed price list carries the windows admission prices; they are read
		// now so that the first list (which a registrar registers at once) has them
		// too. A failed read is tried again by the first request that needs one.
		s.models.publish = cfg.Billing.Pricer().SetWindows
		s.models.sync(context.Background()) // within modelsReadTimeout
	}
	s.metrics.registry.MustRegister(s.conns.collectors()...)
	if cfg.Billing != nil {
		// The settler's too: it counts into the service's billing.Metrics.
		s.metrics.registry.MustRegister(cfg.Billing.Collectors()...)
	}
	s.handler = s.routes()
	base, cut := context.WithCancelCause(context.Background())
	s.cut = cut
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: min(headerTimeout, cfg.RequestReadTimeout),
		// The whole request, body included, from its first byte. net/http lifts this
		// deadline once the body has been read (and at once for a request without
		// one), so it never cuts an answer: streams last as long as generation does.
		ReadTimeout: cfg.RequestReadTimeout,
		IdleTimeout: cfg.IdleTimeout,
		// No write timeout here: the chat path bounds each write instead.
		BaseContext: func(net.Listener) context.Context { return base },
		ConnState:   s.conns.connState,
	}
	return s, nil
}

// routes mounts the API. Each route's middleware finishes its one job before the
// handler runs: credentials (a signed request's signature included) in authenticate,
// capacity in refuseAtCapacity, the pipeline in withPipeline. Optional features mount
// their routes only when configured, so no handler asks whether they are.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.accessLog, s.metrics.instrument)
	if len(s.cfg.AllowedOrigins) > 0 {
		r.Use(s.allowOrigins)
	}
	r.Use(closeUnreadBody, s.writeDeadlines, s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusNotFound, typeNotFound, "not_found", "no route for %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusMethodNotAllowed, typeInvalidRequest, "method_not_allowed", "%s is not allowed on %s", r.Method, r.URL.Path))
	})
	r.Get("/healthz", s.healthz)
	s.mountPage(r)
	s.mountMiniApp(r)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.handler())

	// Flat routes, not mounted subrouters: metrics label requests by the full pattern,
	// also those refused before routing would reach a subrouter.
	r.Group(func(r chi.Router) {
		r.Use(s.authenticate(0))
		r.Get("/v1/pipelines", s.listPipelines)
		r.Get("/v1/pipelines/{id}", s.getPipeline)
		r.Get("/v1/pipelines/{id}/logs", s.pipelineLogs)
		r.With(s.requireOwner, readDeadline(s.cfg.UploadReadTimeout)).Post("/v1/pipelines", s.uploadPipeline)
		r.With(s.requireOwner).Delete("/v1/pipelines/{id}", s.deletePipeline)
	})
	r.Group(func(r chi.Router) {
		r.Use(s.openSealed) // sealed answers hold signed ones: signatures are over the plaintext
		if s.signer != nil {
			r.Use(s.signAnswers) // every answer below is signed, refusals included
		}
		// At capacity a request is refused before a byte of its body is read; then
		// authenticate reads the body (and checks a signature over it) before the
		// handler takes a slot, so a slow body holds none. A panic is recovered here
		// too, where the body is known, so that its 500 is signed for this request.
		r.Use(s.refuseAtCapacity, s.authenticate(s.cfg.MaxRequestBytes))
		if s.e2e != nil {
			r.Use(s.refuseReplays)
		}
		r.Use(s.recoverer)
		r.Post("/v1/chat/completions", s.chatCompletions)
		r.With(s.withPipeline).Post("/p/{id}/v1/chat/completions", s.chatCompletions)
	})

	// The model lists need no credential, as pipeline evidence does not (it names the
	// model too). A client's max_price does not read them: they are not signed, and the
	// context windows it needs are in the signed price list.
	r.With(s.credentialOrReviewer).Get("/v1/models", s.listModels)
	r.With(s.credentialOrReviewer, s.withPipeline).Get("/p/{id}/v1/models", s.pipelineModels)
	if s.cfg.Attestation != nil {
		r.Get("/v1/attestation", s.bootAttestation)
		r.With(s.credentialOrReviewer).Get("/v1/pipelines/{id}/attestation", s.pipelineAttestation)
	} else {
		r.Get("/v1/attestation", s.unavailable(noAttestation()))
		r.Get("/v1/pipelines/{id}/attestation", s.unavailable(noAttestation()))
	}
	if s.cfg.Billing != nil {
		r.Get("/v1/pricing", s.pricing)
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate(0))
			r.Get("/v1/accounts/{account}", s.account)
			r.Get("/v1/accounts/{account}/receipts", s.receipts)
		})
	} else {
		noBilling := s.unavailable(errorf(http.StatusNotFound, typeNotFound, "billing_disabled", "this host does not bill requests"))
		r.Get("/v1/pricing", noBilling)
		r.Get("/v1/accounts/{account}", noBilling)
		r.Get("/v1/accounts/{account}/receipts", noBilling)
	}
	return r
}

// unavailable answers every request with e: the routes of a feature the host was not
// configured with.
func (s *Server) unavailable(e *apiError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, e) }
}

// Handler returns the server's routes, for callers that run their own http.Server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on l, at most Config.MaxConnections at once over all the
// listeners it serves, and speaks TLS on them when Config.TLS is set, until Shutdown; it
// then returns http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	var inner net.Listener = newLimitListener(l, s.conns, s.cfg.TLS == nil)
	if s.cfg.TLS != nil {
		inner = tls.NewListener(inner, s.cfg.TLS)
	}
	return s.http.Serve(inner)
}

// Shutdown stops accepting connections and lets requests in flight (streams included)
// finish until ctx is done. Requests still running then are cut: their contexts are
// cancelled with a cause that the answer words as a 503 "the host is shutting down"
// (for a stream, its error event, after its receipt on a billing host), and reads of
// unfinished request bodies fail. Shutdown waits up to 5 seconds for the cut requests
// to answer, then closes their connections and waits 5 seconds more for their handlers
// to return.
//
// It returns nil when every request ended, drained or cut, and an error when a handler
// still runs after all that (the caller should not close what handlers use, such as
// the ledger, without knowing it). It costs at most ctx's time plus 10 seconds.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err == nil || ctx.Err() == nil {
		return err // drained, or a listener failed to close
	}
	s.log.Warn("cutting the requests still running after the drain", "requests", s.conns.active())
	s.cut(errShuttingDown)
	s.conns.expireReads()
	grace, cancel := context.WithTimeout(context.Background(), cutGrace)
	defer cancel()
	if s.http.Shutdown(grace) == nil {
		return nil
	}
	// Answers that cannot be written (a client that stopped reading) end here.
	s.http.Close()
	last, cancelLast := context.WithTimeout(context.Background(), cutGrace)
	defer cancelLast()
	if err := s.conns.wait(last); err != nil {
		return fmt.Errorf("web: requests still running after they were cut at shutdown: %w", err)
	}
	return nil
}

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

// overCapacity is the answer when every generation slot is taken and no request may
// wait for one, or a request waited SlotWait for none.
func (s *Server) overCapacity() *apiError {
	e := errorf(http.StatusTooManyRequests, typeRateLimit, "over_capacity",
		"the host is at capacity (%d generations running, %d waiting): retry shortly", cap(s.slots), cap(s.waiting))
	e.RetryAfter = 1
	return e
}

// refuseAtCapacity answers 429 with Retry-After when every generation slot is taken
// and as many requests wait for one as may, before anything of the request is read. A
// request let through may still find the queue full once its body is read (acquire).
//
// A sealed request passes: its body is read already, and a refusal before its id is
// recorded would be plaintext and unsigned (sealedWriter), which a router cannot tell
// from a relay's forgery; acquire refuses it after refuseReplays, sealed and signed.
func (s *Server) refuseAtCapacity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.slots) == cap(s.slots) && len(s.waiting) == cap(s.waiting) && sealedOf(r) == nil {
			s.refuseUnread(w, r, s.overCapacity())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseUnread answers err to a request whose body was not read, and closes the
// connection after the answer: net/http would otherwise read the rest of the body
// before it sends the answer, so a refused client could still make the host wait for
// a body it will never use.
func (s *Server) refuseUnread(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Connection", "close")
	s.writeError(w, r, err)
}

// acquire takes a generation slot, waiting for one when all are taken: at most
// MaxWaiting requests wait, each at most SlotWait, and slots go to them in the order
// they came (a channel's blocked senders are served in order, before a newcomer's
// attempt). A request that cannot wait, or waited in vain, gets overCapacity; one
// whose context ends while it waits gets its cause. release gives the slot back.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	select {
	case s.slots <- struct{}{}:
		return s.took(), nil
	default:
	}
	select {
	case s.waiting <- struct{}{}:
	default:
		return nil, s.overCapacity()
	}
	s.metrics.waiting.Inc()
	defer func() {
		<-s.waiting
		s.metrics.waiting.Dec()
	}()
	timeout := time.NewTimer(s.cfg.SlotWait)
	defer timeout.Stop()
	select {
	case s.slots <- struct{}{}:
		return s.took(), nil
	case <-timeout.C:
		return nil, s.overCapacity()
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// took counts a slot just taken and returns its release.
func (s *Server) took() (release func()) {
	s.metrics.generations.Inc()
	s.observeLoad(len(s.slots), cap(s.slots))
	return func() {
		<-s.slots
		s.metrics.generations.Dec()
		s.observeLoad(len(s.slots), cap(s.slots))
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
