package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
)

const (
	defaultProxyListen = "127.0.0.1:8787"
	// proxyMaxBody bounds what the proxy holds whole: a request an app sends (to
	// check the answer's signature against), a non-streaming answer, and in verified
	// mode a whole stream, held until its signature verifies; and one event of a
	// stream, which may carry a whole answer (a post module that answers at the end).
	proxyMaxBody = 16 << 20
	// proxyNonceBytes is the length of the nonce of each pipeline evidence request.
	proxyNonceBytes = 32
	// proxyVerifyTimeout bounds one verification: two evidence requests, one a fresh
	// quote, and the waits the host asks for.
	proxyVerifyTimeout = 2 * time.Minute
)

// How the proxy releases a streamed answer to the app (--release).
const (
	releaseVerified = "verified"
	releaseLive     = "live"
)

// serveProxy runs `cocoon proxy`: it verifies the host and the pipeline, then serves a
// local OpenAI-compatible API whose answers it checks against the attested host key.
func serveProxy(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `proxy --pipeline ID [--host URL] [--api-key KEY] [--policy FILE] [--trust-sim-root FILE] [--expect-module sha256:...]... [--release verified|live] [--listen ADDR]

Serves a local OpenAI-compatible API (base URL http://ADDR/v1) for apps that cannot verify
a host themselves. At start it verifies the host's boot evidence and a fresh quote of the
pipeline's evidence, as cocoon verify does, and exits 1 when any check fails. It forwards
POST /v1/chat/completions to the pipeline and answers GET /v1/models with the pipeline's
attested model. Every answer the host sends is signed by its attested key, errors included,
over every byte the app reads; an answer that does not verify never reaches the app as the
host's: it gets a 502 "unverified_response" instead.

--release verified (the default) releases nothing unverified: a stream is held until its
signature event verifies, then released whole, so the app sees the text only at the end.
--release live forwards a stream's events as they arrive, before the signature at its end
is checked: the app may show text that turns out forged, and such a stream ends with an
error event "unverified_response" instead of "data: [DONE]", which the app must honour.

When an answer's signature does not verify, or an https host presents another TLS key,
the proxy verifies the host again (a restarted host has a new key) and checks the answer
with the new key; when the host fails that verification, the proxy forwards nothing more
until it is restarted.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host is verified in the TLS handshake")
	key := apiKeyFlag(fs, "API key sent to the host; when empty, each app request's own Authorization goes on")
	pipelineID := fs.String("pipeline", "", "the pipeline to serve (its 64-hex id)")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash the pipeline must run (repeatable)")
	trust := trustFlags(fs)
	release := fs.String("release", releaseVerified, "how a streamed answer reaches the app: \"verified\" (held until its signature verifies) or \"live\" (as it arrives, unverified until its end)")
	listen := fs.String("listen", defaultProxyListen, "local address to serve on; any process that reaches it uses the API key")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := checkHostURL(*base); err != nil {
		return err
	}
	if host.CheckHash("sha256:"+*pipelineID) != nil {
		return cli.UsageError(fmt.Sprintf("--pipeline %q is not a pipeline id: an id is 64 lowercase hex digits", *pipelineID))
	}
	if *release != releaseVerified && *release != releaseLive {
		return cli.UsageError(fmt.Sprintf("--release %q: want %q or %q", *release, releaseVerified, releaseLive))
	}
	policy, opts, _, err := trust()
	if err != nil {
		return err
	}
	p := &proxy{base: strings.TrimSuffix(*base, "/"), key: key(), pipelineID: *pipelineID, policy: *policy,
		opts: opts, expect: expect, live: *release == releaseLive, log: stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := p.start(ctx, stdout); err != nil {
		return err
	}
	if !strings.HasPrefix(p.base, "https://") {
		fmt.Fprintf(stderr, "warning: %s is not https: requests and answers cross the network in clear (answers are still checked against the attested host key)\n", p.base)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	fmt.Fprintf(stdout, "\nserving pipeline %s of %s at http://%s/v1 (streams released %s)\n", p.pipelineID, p.base, ln.Addr(), *release)
	return serveUntil(ctx, ln, p)
}

// proxy is the handler of `cocoon proxy`. It is safe for concurrent use.
type proxy struct {
	base       string // without a trailing slash
	key        string // "" passes each app request's Authorization on
	pipelineID string
	policy     attest.Policy
	opts       attest.EvidenceOptions // trust: the sim root and collateral, if given
	expect     []string
	// live releases a stream's events as they arrive (--release live) rather than
	// once its signature verified.
	live bool
	log  io.Writer // re-verifications and their reasons are reported here

	// mu serialises verifications, so that requests that meet a restarted host verify
	// it once, and guards cur and refused.
	mu sync.Mutex
	// cur is the host as last verified; nil when the last verification could not
	// complete (the host was unreachable), and the next request verifies it again.
	cur *verifiedHost
	// refused is set once a verification after the start failed a check: the host is
	// not what was verified, and the proxy forwards nothing more.
	refused error
}

// verifiedHost is a host whose boot and pipeline evidence verified.
type verifiedHost struct {
	// c reaches the host; for an https host its handshakes accept only the TLS key
	// the evidence bound.
	c *client
	// hostKey is the attested key every answer must be signed with.
	hostKey ed25519.PublicKey
	// model is the model of the pipeline's attested manifest.
	model string
}

// errNotVerified marks a verification whose checks failed, as opposed to one that
// could not be made (the host unreachable).
var errNotVerified = errors.New("does not verify")

// start verifies the host and prints both reports to w; it fails when any check fails.
func (p *proxy) start(ctx context.Context, w io.Writer) error {
	v, err := p.verify(ctx, w)
	if err != nil {
		return err
	}
	p.cur = v
	return nil
}

// verify checks the host's boot evidence (and, over https, that it is the evidence the
// TLS handshake verified and pinned), then, if it passed, a fresh quote of the
// pipeline's evidence over a random nonce, from the same host key. It writes the
// reports to w. A failed check is an error wrapping errNotVerified that names every
// failed check. Cost: two requests, one of which takes a quote, and the waits a host
// at its quote rate asks for.
func (p *proxy) verify(ctx context.Context, w io.Writer) (*verifiedHost, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyVerifyTimeout)
	defer cancel()
	c, err := newClient(p.base, p.key, &p.policy, p.opts)
	if err != nil {
		return nil, err
	}
	c.log = p.log
	refuse := func(failed []string) error {
		return fmt.Errorf("refusing to proxy to %s, which %w: %s", p.base, errNotVerified, strings.Join(failed, "; "))
	}
	boot, err := c.evidence(ctx, "/v1/attestation")
	if err != nil {
		return nil, err
	}
	r, err := attest.VerifyEvidence(*boot, p.policy, p.opts)
	if err != nil {
		return nil, err
	}
	if c.ratls != nil {
		r.Checks = append(r.Checks, ratlsCheck(c.ratls, boot))
	}
	fmt.Fprintf(w, "boot evidence of %s\n%s", p.base, r)
	if failed := failedChecks("boot evidence", r); failed != nil {
		return nil, refuse(failed) // no quote is spent on a host that failed
	}

	nonce := make([]byte, proxyNonceBytes)
	rand.Read(nonce) // crypto/rand.Read never fails.
	ev, err := c.evidence(ctx, "/v1/pipelines/"+p.pipelineID+"/attestation?nonce="+url.QueryEscape(hex.EncodeToString(nonce)))
	if err != nil {
		return nil, err
	}
	opts := p.opts
	opts.PipelineID, opts.Nonce, opts.ExpectModules, opts.HostKey = p.pipelineID, nonce, p.expect, boot.HostKey
	if r, err = attest.VerifyEvidence(*ev, p.policy, opts); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "\npipeline evidence of %s\n%s", p.pipelineID, r)
	if failed := failedChecks("pipeline evidence", r); failed != nil {
		return nil, refuse(failed)
	}
	var manifest struct {
		Model string `json:"model"`
	}
	json.Unmarshal(ev.Manifest, &manifest) // it verified: it hashes to the pipeline id
	return &verifiedHost{c: c, hostKey: boot.HostKey, model: manifest.Model}, nil
}

func failedChecks(what string, r *attest.Report) []string {
	var failed []string
	for _, c := range r.Checks {
		if !c.OK {
			failed = append(failed, what+": "+c.Name+": "+c.Detail)
		}
	}
	return failed
}

// host returns the host as verified, verifying it when the last verification could not
// complete.
func (p *proxy) host(ctx context.Context) (*verifiedHost, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.refused != nil:
		return nil, p.refused
	case p.cur != nil:
		return p.cur, nil
	}
	return p.verifyAgain(ctx, "the last verification of the host could not complete")
}

// reverify verifies the host again, because of why, unless it was verified again since
// stale was current; it returns the host as verified now.
func (p *proxy) reverify(ctx context.Context, stale *verifiedHost, why string) (*verifiedHost, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.refused != nil:
		return nil, p.refused
	case p.cur != nil && p.cur != stale:
		return p.cur, nil // another request verified it again meanwhile
	}
	return p.verifyAgain(ctx, why)
}

// verifyAgain verifies the host and logs why and how it went. A failed check makes the
// proxy refuse every request from now on. p.mu is held.
func (p *proxy) verifyAgain(ctx context.Context, why string) (*verifiedHost, error) {
	fmt.Fprintf(p.log, "%s: verifying the host at %s again\n", why, p.base)
	if p.cur != nil {
		p.cur.c.http.CloseIdleConnections()
	}
	old := p.cur
	v, err := p.verify(ctx, io.Discard)
	p.cur = v
	switch {
	case errors.Is(err, errNotVerified):
		p.refused = fmt.Errorf("%w (the proxy forwards nothing more: check the host, then restart the proxy)", err)
		fmt.Fprintln(p.log, p.refused)
		return nil, p.refused
	case err != nil:
		err = fmt.Errorf("the host at %s could not be verified again: %w", p.base, err)
		fmt.Fprintln(p.log, err)
		return nil, err
	case old != nil && !old.hostKey.Equal(v.hostKey):
		fmt.Fprintf(p.log, "the host at %s verified again, with a new host key %x (it was %x): it restarted\n", p.base, v.hostKey, old.hostKey)
	default:
		fmt.Fprintf(p.log, "the host at %s verified again, with the same host key\n", p.base)
	}
	return v, nil
}

// forward sends a request to the pipeline path on the verified host. When the host's
// handshake is refused because its TLS key changed, it verifies the host again and, if
// that passes, retries once: the refused handshake sent nothing.
func (p *proxy) forward(r *http.Request, method, path string, body []byte) (*http.Response, *verifiedHost, error) {
	v, err := p.host(r.Context())
	if err != nil {
		return nil, nil, err
	}
	resp, err := p.send(r, v, method, path, body)
	if errors.Is(err, attest.ErrRATLS) {
		if v, err = p.reverify(r.Context(), v, "the host presented another TLS key"); err != nil {
			return nil, nil, err
		}
		resp, err = p.send(r, v, method, path, body)
	}
	if err != nil {
		return nil, nil, v.c.doError(err)
	}
	return resp, v, nil
}

// send makes one request of the app's r to the host v.
func (p *proxy) send(r *http.Request, v *verifiedHost, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), method, p.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.key != "" {
		req.Header.Set("Authorization", "Bearer "+p.key)
	} else if auth := r.Header.Get("Authorization"); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return v.c.http.Do(req)
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/chat/completions" && r.Method == http.MethodPost:
		p.chat(w, r)
	case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
		p.models(w, r)
	default:
		writeProxyError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("%s %s: this proxy serves POST /v1/chat/completions and GET /v1/models", r.Method, r.URL.Path))
	}
}

// models answers GET /v1/models with the model of the pipeline's attested manifest:
// the host's own answer to it is not signed.
func (p *proxy) models(w http.ResponseWriter, r *http.Request) {
	v, err := p.host(r.Context())
	if err != nil {
		writeProxyError(w, http.StatusBadGateway, "host_not_verified", err.Error())
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", []model{{ID: v.model, Object: "model", OwnedBy: "cocoon"}}})
}

// chat forwards a chat completion and releases the host's answer once its signature
// verifies (a stream in live mode: as it arrives).
func (p *proxy) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, proxyMaxBody))
	if err != nil {
		writeProxyError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("the request body is not readable or exceeds %d bytes", proxyMaxBody))
		return
	}
	resp, v, err := p.forward(r, http.MethodPost, "/p/"+p.pipelineID+"/v1/chat/completions", body)
	if err != nil {
		writeProxyError(w, http.StatusBadGateway, "host_not_verified", err.Error())
		return
	}
	defer resp.Body.Close()
	a := &answer{p: p, host: v, request: body}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "text/event-stream" {
		a.relayStream(w, r, resp.Body)
		return
	}
	a.relayWhole(w, r, resp)
}

// answer is one answer on its way from the host to the app.
type answer struct {
	p       *proxy
	host    *verifiedHost // as verified when the request was sent
	request []byte        // the body as sent to the host
}

func (a *answer) verifier(key ed25519.PublicKey) attest.ResponseVerifier {
	return attest.ResponseVerifier{HostKey: key, Request: a.request, PipelineID: a.p.pipelineID}
}

// recheck is what to do when the answer's signature does not verify with the host key
// it was sent under: verify the host again (a restarted host has a new key) and, when
// its key is new, check the answer with it (check). The error says why the answer is
// not the attested host's.
func (a *answer) recheck(ctx context.Context, mismatch error, check func(ed25519.PublicKey) error) error {
	v, err := a.p.reverify(ctx, a.host, "an answer's signature does not verify with the attested host key")
	switch {
	case err != nil:
		return fmt.Errorf("%w; and %w", mismatch, err)
	case v.hostKey.Equal(a.host.hostKey):
		return fmt.Errorf("%w (the host's key has not changed: the answer was altered on its way)", mismatch)
	}
	a.host = v
	return check(v.hostKey)
}

// relayWhole answers with a non-streaming answer (a chat.completion or the host's
// error) once its Cocoon-Signature verifies over its status, Retry-After and body, and
// with a 502 otherwise: the app sees no byte of an unverified answer.
func (a *answer) relayWhole(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, proxyMaxBody+1))
	if err != nil || len(b) > proxyMaxBody {
		writeProxyError(w, http.StatusBadGateway, "host_error", fmt.Sprintf("the host's answer is unreadable or exceeds %d bytes", proxyMaxBody))
		return
	}
	retryAfter, signature := resp.Header.Get("Retry-After"), resp.Header.Get(attest.ResponseSignatureHeader)
	check := func(key ed25519.PublicKey) error {
		return a.verifier(key).VerifyBody(resp.StatusCode, retryAfter, b, signature)
	}
	err = check(a.host.hostKey)
	if errors.Is(err, attest.ErrSignatureMismatch) {
		err = a.recheck(r.Context(), err, check)
	}
	if err != nil {
		writeProxyError(w, http.StatusBadGateway, "unverified_response", unverified(err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json") // what the host sends; its own is not signed
	h.Set(attest.ResponseSignatureHeader, signature)
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
}

// relayStream reads a stream's events and checks them against the signature event at
// its end (attest.SignedStream): every event, the receipt of a billing host and an
// error event included, is covered by it, in order. In verified mode it holds the
// events and releases them, the host's bytes exactly, once the stream verified to its
// end; a stream that does not verify is a 502, and the app gets none of it. In live
// mode it forwards each event as it arrives; a stream that then does not verify ends
// with an error event "unverified_response" instead of what the host sent after its
// signature.
func (a *answer) relayStream(w http.ResponseWriter, r *http.Request, body io.Reader) {
	s := a.verifier(a.host.hostKey).ReadStream(body, proxyMaxBody)
	var held bytes.Buffer
	started := false
	start := func() {
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	for {
		ev, err := s.Next()
		if errors.Is(err, attest.ErrSignatureMismatch) {
			err = a.recheck(r.Context(), err, func(key ed25519.PublicKey) (err error) {
				ev, err = s.RetryWithKey(key)
				return err
			})
		}
		switch {
		case err == io.EOF && !a.p.live:
			start()
			w.Write(held.Bytes())
			return
		case err == io.EOF:
			return
		case err != nil && !started:
			writeProxyError(w, http.StatusBadGateway, "unverified_response", unverified(err))
			return
		case err != nil:
			b, _ := json.Marshal(proxyError(unverified(err), "unverified_response"))
			w.Write([]byte("data: " + string(b) + "\n\n"))
			http.NewResponseController(w).Flush()
			return
		case !a.p.live:
			if held.Write(ev.Raw); held.Len() > proxyMaxBody {
				writeProxyError(w, http.StatusBadGateway, "unverified_response",
					fmt.Sprintf("the host's stream exceeds the %d bytes the proxy holds until its signature verifies (--release live forwards it as it arrives)", proxyMaxBody))
				return
			}
			continue
		case !started:
			start()
		}
		w.Write(ev.Raw)
		http.NewResponseController(w).Flush()
	}
}

// unverified words a failed signature check for the app.
func unverified(err error) string {
	return "the answer is not signed by the attested host key, so it was not delivered: " + err.Error()
}

type proxyErrorBody struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

// proxyError is an error in the OpenAI shape, of type "cocoon_proxy_error".
func proxyError(message, code string) proxyErrorBody {
	var e proxyErrorBody
	e.Error.Message, e.Error.Type, e.Error.Code = message, "cocoon_proxy_error", code
	return e
}

func writeProxyError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(proxyError(message, code))
}
