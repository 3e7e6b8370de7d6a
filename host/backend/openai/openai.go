package openai

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
)

// Defaults of the options.
const (
	DefaultFirstByteTimeout = 60 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultMaxLineSize      = 16 << 20
)

// minLineSize is the smallest WithMaxLineSize that New accepts: one chunk of a real
// server is several hundred bytes.
const minLineSize = 1 << 10

// Backend is a backend.Backend that forwards chat completions to an OpenAI-compatible
// server. It is safe for concurrent use.
type Backend struct {
	cfg        config
	chatURL    string
	modelsURL  string
	redact     *strings.Replacer
	closed     context.Context
	close      context.CancelFunc
	ownsClient bool
}

var _ backend.Backend = (*Backend)(nil)

type config struct {
	apiKey        string
	defaultModel  string
	overrideModel string
	client        *http.Client
	firstByte     time.Duration
	idle          time.Duration
	maxLine       int
}

// Option configures a Backend in New.
type Option func(*config)

// WithAPIKey sends key as "Authorization: Bearer key" on every request. The key never
// appears in an error: an upstream message that quotes it is redacted.
func WithAPIKey(key string) Option { return func(c *config) { c.apiKey = key } }

// WithModel names the model to ask for when a request names none.
func WithModel(id string) Option { return func(c *config) { c.defaultModel = id } }

// WithModelOverride asks for model id whatever the request names: for a server that
// serves one model under a name clients do not know.
func WithModelOverride(id string) Option { return func(c *config) { c.overrideModel = id } }

// WithHTTPClient sends requests through client instead of a client of the Backend's own.
// A Timeout on client bounds whole streams, which cuts long answers short: leave it zero
// and rely on the first-byte and idle timeouts.
func WithHTTPClient(client *http.Client) Option { return func(c *config) { c.client = client } }

// WithFirstByteTimeout bounds the wait from sending a request to the first byte of the
// response body, which covers connecting, queueing on the server and prompt processing.
// d <= 0 disables it. The default is DefaultFirstByteTimeout.
func WithFirstByteTimeout(d time.Duration) Option { return func(c *config) { c.firstByte = d } }

// WithIdleTimeout bounds the silence between two reads of a response body once it has
// started; keep-alive comments count as activity, since that is what servers and proxies
// send them for. Time the caller spends in emit does not count. d <= 0 disables it. The
// default is DefaultIdleTimeout. There is no total timeout: a stream may last as long as
// it keeps moving.
func WithIdleTimeout(d time.Duration) Option { return func(c *config) { c.idle = d } }

// WithMaxLineSize caps one line of an event stream, and the body of a model list, at n
// bytes; a longer line fails the request with CodeUpstream. Lines are buffered whole, so
// n bounds the memory of one stream. The default is DefaultMaxLineSize; New refuses
// n < 1 KiB.
func WithMaxLineSize(n int) Option { return func(c *config) { c.maxLine = n } }

// New returns a Backend for the server whose OpenAI API is rooted at baseURL, such as
// "http://127.0.0.1:8000/v1" (vLLM) or "http://127.0.0.1:11434/v1" (Ollama). It only
// checks its arguments: use Health to see whether the server answers.
func New(baseURL string, opts ...Option) (*Backend, error) {
	cfg := config{
		firstByte: DefaultFirstByteTimeout,
		idle:      DefaultIdleTimeout,
		maxLine:   DefaultMaxLineSize,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("openai: base URL must be an absolute http or https URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("openai: base URL %s must not hold credentials, a query or a fragment", u.Redacted())
	}
	if cfg.maxLine < minLineSize {
		return nil, fmt.Errorf("openai: max line size %d is below %d bytes", cfg.maxLine, minLineSize)
	}
	base := strings.TrimSuffix(u.String(), "/")
	b := &Backend{
		cfg:       cfg,
		chatURL:   base + "/chat/completions",
		modelsURL: base + "/models",
	}
	if b.cfg.client == nil {
		b.cfg.client, b.ownsClient = newClient(), true
	}
	// Upstream messages are shown to clients: they must not carry the key or tell
	// where the server lives.
	pairs := []string{base, "[backend]", u.Host, "[backend]", u.Hostname(), "[backend]"}
	if cfg.apiKey != "" {
		pairs = append([]string{cfg.apiKey, "[redacted]"}, pairs...)
	}
	b.redact = strings.NewReplacer(pairs...)
	b.closed, b.close = context.WithCancel(context.Background())
	return b, nil
}

// newClient returns the client of a Backend built without WithHTTPClient: its own
// transport, so Close can drop its idle connections, with more idle connections per
// host than net/http's default of 2 because every request goes to the same server;
// and no redirects, which an inference API never sends.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	// A stream read behind its server reads many events per system call.
	t.ReadBufferSize = 64 << 10
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Generate streams the answer to req from POST {base}/chat/completions, calling emit
// with each text delta of the first choice. See the package documentation for how the
// request body is built and how usage is counted.
//
// A failure is a *backend.Error, except that a cancelled ctx returns ctx.Err() and a
// failing emit returns emit's error, both with FinishReason "cancelled". The Result of a
// failed generation still holds the model and the usage of what was generated.
func (b *Backend) Generate(ctx context.Context, req *backend.Request, emit func(delta string) error) (backend.Result, error) {
	body, model, err := b.chatBody(req)
	if err != nil {
		return backend.Result{}, err
	}
	c, err := b.send(ctx, http.MethodPost, b.chatURL, body)
	if err != nil {
		if err == ctx.Err() {
			return backend.Result{FinishReason: "cancelled", Model: model}, err
		}
		return backend.Result{}, err
	}
	defer c.close()
	if mt := mediaType(c.resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return backend.Result{}, b.notAStream(c, mt)
	}
	s := &stream{
		emit: func(delta string) error {
			// The caller's time is not the server's silence.
			c.dog.pause()
			defer c.dog.resume()
			return emit(delta)
		},
		model:  model,
		redact: b.redact,
	}
	var answer io.Reader = c.resp.Body
	idle, ended := backend.IdleHook(ctx), false
	if idle != nil {
		answer = idleBody{r: answer, idle: idle, dog: c.dog, ended: &ended}
		// idleBody keeps the watchdog paused between reads, when the deltas are
		// emitted: no pause and clock reading per delta.
		s.emit = emit
	}
	err = readStream(answer, b.cfg.maxLine, s)
	if err == nil && idle != nil && !ended {
		// The last deltas go out now, not after drain's wait for the end of the
		// body. When the body has ended, drain does not wait: the caller has them
		// at once when Generate returns, without a call.
		err = idleBody{idle: idle, dog: c.dog}.call()
	}
	res := s.result(req)
	if err == nil {
		c.drain()
		return res, nil
	}
	var ee emitError
	switch {
	case errors.As(err, &ee):
		res.FinishReason = "cancelled"
		return res, ee.err
	case ctx.Err() != nil:
		res.FinishReason = "cancelled"
		return res, ctx.Err()
	}
	res.FinishReason = ""
	// A timeout or Close can surface as anything the broken stream gave; say which.
	var be *backend.Error
	if errors.As(err, &be) && c.dog.fired() == notFired && b.closed.Err() == nil {
		return res, be
	}
	return res, c.failure(err, "the stream broke off")
}

// Models lists the models of GET {base}/models with their context windows where the
// server tells them: vLLM's and SGLang's max_model_len, a context_length field, or
// llama.cpp's meta.n_ctx_train (the window the model was trained with; the server may
// run with a smaller one).
func (b *Backend) Models(ctx context.Context) ([]backend.Model, error) {
	c, err := b.send(ctx, http.MethodGet, b.modelsURL, nil)
	if err != nil {
		return nil, err
	}
	defer c.close()
	data, err := io.ReadAll(io.LimitReader(c.resp.Body, int64(b.cfg.maxLine)+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.failure(err, "the model list broke off")
	}
	if len(data) > b.cfg.maxLine {
		return nil, backend.Errorf(backend.CodeUpstream, "inference server sent a model list over %d bytes", b.cfg.maxLine)
	}
	return parseModels(data)
}

// Health returns nil if GET {base}/models answers with a model list, the one probe
// every OpenAI-compatible server has.
func (b *Backend) Health(ctx context.Context) error {
	_, err := b.Models(ctx)
	return err
}

// Close fails the generations in flight with CodeUnavailable and every later call. It
// drops the idle connections of the Backend's own client, not of one passed with
// WithHTTPClient.
func (b *Backend) Close() error {
	b.close()
	if b.ownsClient {
		b.cfg.client.CloseIdleConnections()
	}
	return nil
}

// call is one HTTP exchange with the server, watched for silence.
type call struct {
	b      *Backend
	ctx    context.Context // the caller's
	resp   *http.Response
	dog    *watchdog
	cancel context.CancelFunc
	unhook func() bool
}

// send makes one request and returns a call whose response has status 200; any other
// status becomes the *backend.Error the body describes. The caller must close the call.
func (b *Backend) send(ctx context.Context, method, target string, body []byte) (*call, error) {
	if b.closed.Err() != nil {
		return nil, backend.Errorf(backend.CodeUnavailable, "backend is closed")
	}
	rctx, cancel := context.WithCancel(ctx)
	c := &call{b: b, ctx: ctx, cancel: cancel, unhook: context.AfterFunc(b.closed, cancel)}
	c.dog = startWatchdog(b.cfg.firstByte, b.cfg.idle, cancel)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, target, rd)
	if err != nil { // only a bad method or URL, which New has checked
		c.close()
		return nil, backend.Errorf(backend.CodeUpstream, "cannot build the request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if b.cfg.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.cfg.apiKey)
	}
	resp, err := b.cfg.client.Do(req)
	if err != nil {
		defer c.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.failure(err, "cannot reach the inference server")
	}
	resp.Body = watchedBody{resp.Body, c.dog}
	c.resp = resp
	if resp.StatusCode != http.StatusOK {
		defer c.close()
		return nil, b.statusError(c)
	}
	return c, nil
}

// drainWait bounds the wait for the end of a body after [DONE].
const drainWait = 100 * time.Millisecond

// drain reads what is left of a response so that the transport can reuse the
// connection: after [DONE] only the end of the chunked body should be left. A server
// or proxy that keeps the body open gets its connection closed instead.
func (c *call) drain() {
	c.dog.stop()
	t := time.AfterFunc(drainWait, c.cancel)
	_, _ = io.CopyN(io.Discard, c.resp.Body, 4<<10)
	t.Stop()
}

func (c *call) close() {
	c.dog.stop()
	if c.resp != nil {
		c.resp.Body.Close()
	}
	c.unhook()
	c.cancel()
}

// failure explains a transport error of a call whose caller's context is not done: a
// closed Backend, a timeout of the watchdog, or a network failure (named by its kind
// alone, since the error text holds the server's address).
func (c *call) failure(err error, what string) *backend.Error {
	if c.b.closed.Err() != nil {
		return backend.Errorf(backend.CodeUnavailable, "backend is closed")
	}
	switch c.dog.fired() {
	case firstByteFired:
		return backend.Errorf(backend.CodeTimeout, "inference server sent nothing within %s", c.b.cfg.firstByte)
	case idleFired:
		return backend.Errorf(backend.CodeTimeout, "inference server went silent for %s", c.b.cfg.idle)
	}
	code := backend.CodeUpstream
	if c.resp == nil {
		code = backend.CodeUnavailable
	}
	return backend.Errorf(code, "%s: %s", what, netReason(err))
}
