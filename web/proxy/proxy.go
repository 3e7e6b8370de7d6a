package proxy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// Release is how the proxy releases a streamed answer to the app.
type Release string

const (
	// ReleaseVerified holds a stream until its signature event verified, then
	// releases it whole: the app never receives a byte the host did not sign.
	ReleaseVerified Release = "verified"
	// ReleaseLive forwards a stream's events as they arrive, before its signature is
	// checked; a stream that then does not verify ends with an error event
	// "unverified_response" instead of "data: [DONE]", which the app must honour.
	ReleaseLive Release = "live"
)

// MaxBody bounds what the proxy holds whole: a request an app sends (to check the
// answer's signature against), a non-streaming answer, in verified release a whole
// stream, and one event of a stream.
const MaxBody = 16 << 20

// Defaults of the health loop.
const (
	DefaultHealthInterval   = 10 * time.Second
	DefaultReverifyInterval = 10 * time.Minute
	DefaultBackoffMin       = time.Second
	DefaultBackoffMax       = time.Minute
)

type config struct {
	source     Source
	pipelineID string
	apiKey     string
	policy     attest.Policy
	opts       attest.EvidenceOptions
	simRoots   []*x509.Certificate
	expect     []string
	release    Release
	log        io.Writer
	plaintext  bool // see WithPlaintext
	// plaintextHTTP lets WithPlaintext reach http hosts: set only by this package's
	// tests of the signature layer beneath the encryption, whose relay alters answers.
	plaintextHTTP bool
	// privateEndpoints lets registered hosts be reached at any address (see
	// WithPrivateEndpoints).
	privateEndpoints bool

	healthEvery, reverifyEvery time.Duration
	backoffMin, backoffMax     time.Duration
}

// roots are the simulator roots verification tries in turn: nil alone when none is
// trusted (the policy's trust_sim_root still applies).
func (c *config) roots() []*x509.Certificate {
	if len(c.simRoots) == 0 {
		return []*x509.Certificate{nil}
	}
	return c.simRoots
}

// An Option configures a Proxy.
type Option func(*config)

// WithHosts routes to a fixed list of host URLs (StaticHosts).
func WithHosts(urls ...string) Option {
	return func(c *config) { c.source = StaticHosts(slices.Clone(urls)) }
}

// WithSource routes to the hosts s lists, asked at Start and every health interval.
func WithSource(s Source) Option { return func(c *config) { c.source = s } }

// WithPipeline is the pipeline (its 64-hex id) every request goes to. Required.
func WithPipeline(id string) Option { return func(c *config) { c.pipelineID = id } }

// WithAPIKey sends key to every host; without it (or with ""), each app request's own
// Authorization goes on, and evidence is fetched without a credential.
func WithAPIKey(key string) Option { return func(c *config) { c.apiKey = key } }

// WithTrust verifies every host's evidence against p and opts (Intel's collateral,
// Strict); their pipeline, nonce, expected modules and host key are the proxy's own.
// Without it the policy allows any measurement and simulated evidence is refused.
func WithTrust(p attest.Policy, opts attest.EvidenceOptions) Option {
	return func(c *config) { c.policy, c.opts = p, opts }
}

// WithSimRoots trusts simulated evidence under each of roots, for tests only: each
// host must verify under one of them (hosts on different simulators can be trusted
// together).
func WithSimRoots(roots ...*x509.Certificate) Option {
	return func(c *config) { c.simRoots = slices.Clone(roots) }
}

// WithExpectModules requires the pipeline's manifest to list each of these module
// hashes ("sha256:<hex>").
func WithExpectModules(hashes ...string) Option {
	return func(c *config) { c.expect = slices.Clone(hashes) }
}

// WithPrivateEndpoints lets the proxy reach a host a registry lists (a Host with a
// Record) at any address. Without it, every connection to such a host is refused when
// the address it resolves to, at connection time, is loopback, private, link-local,
// unspecified, multicast or otherwise not public (see refusePrivate): whoever registers
// chooses the endpoint. It is for registries on a local network and for tests; hosts
// the caller lists itself (WithHosts) are reached wherever they are, with or without it.
func WithPrivateEndpoints() Option { return func(c *config) { c.privateEndpoints = true } }

// WithRelease sets how streams reach the app; ReleaseVerified by default.
func WithRelease(r Release) Option { return func(c *config) { c.release = r } }

// WithLog is where state changes of hosts, re-verifications and their reasons are
// written (default: nowhere). It must be safe for concurrent writes of whole lines.
func WithLog(w io.Writer) Option { return func(c *config) { c.log = w } }

// WithHealth sets how often a host in routing is checked (GET /readyz and its price
// list) and verified afresh (a new pipeline quote), and the backoff bounds of a host
// out of routing: it is tried again after min, then twice as long each time, at most
// max.
func WithHealth(every, reverifyEvery, backoffMin, backoffMax time.Duration) Option {
	return func(c *config) {
		c.healthEvery, c.reverifyEvery, c.backoffMin, c.backoffMax = every, reverifyEvery, backoffMin, backoffMax
	}
}

// Proxy is a local OpenAI-compatible endpoint in front of one or more attested hosts
// that serve one pipeline. It verifies every host independently before it routes to
// it, checks every answer against the host key the host's evidence attests, and
// routes each request by price (cheapest first) and load (requests in flight and
// latency), failing over to another verified host when a request failed before any
// byte reached the app and resending it cannot charge twice. It is safe for
// concurrent use; Start and Close own its background work.
type Proxy struct {
	cfg config
	// sessions seals requests, under the end-to-end session each host granted when
	// there is one (web/E2E.md §8).
	sessions *e2e.Sessions
	// keys is the billing host each idempotency key went to, for the key's retries.
	keys keyMemory

	// mu guards hosts and the fields below.
	mu     sync.Mutex
	hosts  []*upstream // in the source's order
	ctx    context.Context
	stop   context.CancelFunc
	closed bool
	// wg counts the health loops and the source's refresh loop.
	wg sync.WaitGroup
}

// New checks the options and returns a Proxy that routes nowhere until Start.
func New(opts ...Option) (*Proxy, error) {
	cfg := config{release: ReleaseVerified, log: io.Discard, healthEvery: DefaultHealthInterval, reverifyEvery: DefaultReverifyInterval,
		backoffMin: DefaultBackoffMin, backoffMax: DefaultBackoffMax}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.source == nil:
		return nil, errors.New("proxy: no hosts: WithHosts or WithSource")
	case host.CheckHash("sha256:"+cfg.pipelineID) != nil:
		return nil, fmt.Errorf("proxy: pipeline %q is not a pipeline id: an id is 64 lowercase hex digits", cfg.pipelineID)
	case cfg.release != ReleaseVerified && cfg.release != ReleaseLive:
		return nil, fmt.Errorf("proxy: release %q: want %q or %q", cfg.release, ReleaseVerified, ReleaseLive)
	case cfg.healthEvery <= 0 || cfg.reverifyEvery <= 0 || cfg.backoffMin <= 0 || cfg.backoffMax < cfg.backoffMin:
		return nil, errors.New("proxy: health intervals must be positive, and the backoff's max at least its min")
	}
	p := &Proxy{cfg: cfg, sessions: e2e.NewSessions()}
	p.ctx, p.stop = context.WithCancel(context.Background())
	return p, nil
}

// Start asks the source for the hosts and verifies each (concurrently), writing each
// host's reports to w, in the source's order; then it starts the health loops. It
// fails when no host verified (the error names why each failed), and then has started
// nothing. Hosts that failed are logged and tried again with backoff. Cost: per host,
// a boot evidence request and a fresh pipeline quote; it returns within the
// verification timeout (2 minutes) or when ctx ends.
func (p *Proxy) Start(ctx context.Context, w io.Writer) error {
	hosts, err := p.cfg.source.Hosts(ctx)
	if err != nil {
		return fmt.Errorf("proxy: the host list: %w", err)
	}
	if len(hosts) == 0 {
		return errors.New("proxy: the host list is empty")
	}
	ups := make([]*upstream, len(hosts))
	reports := make([]bytes.Buffer, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		ups[i] = &upstream{p: p, info: h}
		wg.Go(func() { errs[i] = ups[i].admit(ctx, &reports[i]) })
	}
	wg.Wait()
	var failed []string
	for i := range hosts {
		w.Write(reports[i].Bytes())
		if errs[i] != nil {
			failed = append(failed, errs[i].Error())
		}
	}
	if len(failed) == len(hosts) {
		if len(hosts) == 1 {
			return errs[0]
		}
		return fmt.Errorf("no host verified:\n  %s", strings.Join(failed, "\n  "))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: closed")
	}
	for _, u := range ups {
		p.addLocked(u)
	}
	p.wg.Go(func() { p.refreshLoop(p.ctx) })
	return nil
}

// addLocked puts u in the host list and starts its health loop. p.mu is held.
func (p *Proxy) addLocked(u *upstream) {
	ctx, stop := context.WithCancel(p.ctx)
	u.stop = stop
	p.hosts = append(p.hosts, u)
	p.wg.Go(func() { u.run(ctx) })
}

// refreshLoop asks the source for its hosts every health interval: a new host is
// verified by its health loop at once, a dropped one stops.
func (p *Proxy) refreshLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.healthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hosts, err := p.cfg.source.Hosts(ctx)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(p.cfg.log, "the host list could not be read (keeping the hosts the proxy has): %v\n", err)
			}
			continue
		}
		p.refresh(hosts)
	}
}

// refresh makes the host list hosts: hosts no longer listed leave routing, new ones
// start their health loop, which verifies them first.
func (p *Proxy) refresh(hosts []Host) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	listed := map[string]Host{}
	for _, h := range hosts {
		listed[h.URL] = h
	}
	kept := p.hosts[:0]
	for _, u := range p.hosts {
		if h, ok := listed[u.info.URL]; ok && h.sameListing(u.info) {
			kept = append(kept, u)
			delete(listed, u.info.URL)
			continue
		}
		u.stop()
		u.setState(stateGone, "the host list no longer names it (or its listing changed: key, prices, boot or allowlist)")
	}
	p.hosts = kept
	for _, h := range hosts {
		if _, ok := listed[h.URL]; ok {
			u := &upstream{p: p, info: h}
			fmt.Fprintf(p.cfg.log, "host %s: listed: verifying it\n", h.URL)
			p.addLocked(u) // state new, retryAt zero: its loop verifies it at once
			delete(listed, h.URL)
		}
	}
}

// Close stops the health loops and waits for them; requests under way finish on
// their own (the server that serves the Proxy owns them). It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.stop()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.hosts {
		u.mu.Lock()
		if u.last != nil {
			u.last.conn.close()
		}
		u.mu.Unlock()
	}
	return nil
}

// HostStatus is one host as the proxy sees it.
type HostStatus struct {
	URL      string
	State    string // "ready", "down", "refused", "lacks the pipeline", "new"
	Bills    bool
	InFlight int64
	Served   int64 // requests it answered
	// HostKey is the attested host key, while the host is in routing.
	HostKey []byte
}

// Hosts reports each host's state, in the source's order.
func (p *Proxy) Hosts() []HostStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]HostStatus, len(p.hosts))
	for i, u := range p.hosts {
		u.mu.Lock()
		out[i] = HostStatus{URL: u.info.URL, State: u.state.String(), Bills: u.prices != nil, InFlight: u.inflight.Load(), Served: u.served.Load()}
		if u.cur != nil {
			out[i].HostKey = u.cur.hostKey
		}
		u.mu.Unlock()
	}
	return out
}

// ServeHTTP serves POST /v1/chat/completions (to the pipeline, on a verified host)
// and GET /v1/models (the pipeline's attested model); anything else is a 404.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/chat/completions" && r.Method == http.MethodPost:
		p.chat(w, r)
	case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
		p.models(w)
	default:
		(&Error{http.StatusNotFound, CodeNotFound,
			fmt.Sprintf("%s %s: this proxy serves POST /v1/chat/completions and GET /v1/models", r.Method, r.URL.Path)}).Write(w)
	}
}

// models answers GET /v1/models with the model of the pipeline's attested manifest
// (the same on every host: the pipeline id covers it); the host's own answer to it is
// not signed.
func (p *Proxy) models(w http.ResponseWriter) {
	var model string
	for _, u := range p.snapshot() {
		if s, ok := u.ready(); ok {
			model = s.v.model
			break
		}
	}
	if model == "" {
		p.noHost(nil).Write(w)
		return
	}
	type entry struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Object string  `json:"object"`
		Data   []entry `json:"data"`
	}{"list", []entry{{ID: model, Object: "model", OwnedBy: "cocoon"}}})
}

// snapshot is the host list as it is now.
func (p *Proxy) snapshot() []*upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.hosts)
}

// noHost is the answer when no verified host can take a request: it names each
// host's state, and last, the failure of the last host tried.
func (p *Proxy) noHost(last error) *Error {
	var states []string
	for _, h := range p.Hosts() {
		states = append(states, h.URL+": "+h.State)
	}
	msg := "no verified host can take the request (" + strings.Join(states, "; ") + ")"
	if last != nil {
		msg += ": " + last.Error()
	}
	return &Error{http.StatusBadGateway, CodeHostNotVerified, msg}
}
