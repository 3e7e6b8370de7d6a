package main

import (
	"bufio"
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
	// proxyMaxBody bounds a request an app sends and a non-streaming answer the host
	// sends, both held whole: the request to sign-check against, the answer to check
	// before the app sees any of it.
	proxyMaxBody = 16 << 20
	// proxyMaxEvent bounds one server-sent event of a stream.
	proxyMaxEvent = 4 << 20
	// proxyNonceBytes is the length of the nonce of each pipeline evidence request.
	proxyNonceBytes = 32
	// proxyVerifyTimeout bounds one verification: two evidence requests, one a fresh
	// quote.
	proxyVerifyTimeout = time.Minute
)

// serveProxy runs `cocoon proxy`: it verifies the host and the pipeline, then serves a
// local OpenAI-compatible API whose answers it checks against the attested host key.
func serveProxy(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `proxy --pipeline ID [--host URL] [--api-key KEY] [--policy FILE] [--trust-sim-root FILE] [--expect-module sha256:...]... [--listen ADDR]

Serves a local OpenAI-compatible API (base URL http://ADDR/v1) for apps that cannot verify
a host themselves. At start it verifies the host's boot evidence and a fresh quote of the
pipeline's evidence, as cocoon verify does, and exits 1 when any check fails. It forwards
POST /v1/chat/completions and GET /v1/models to the pipeline, pins an https host's attested
TLS key, verifies the host again when that key changes, and checks every answer's signature
with the attested host key: an answer that does not verify is a 502, or for a stream an
error event instead of "data: [DONE]". A stream is forwarded as it arrives, so the app has
already received the chunks before the bad signature: an app must treat a stream that does
not end with [DONE] as failed, as the OpenAI SDKs do.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host is verified in the TLS handshake")
	key := apiKeyFlag(fs, "API key sent to the host; when empty, each app request's own Authorization goes on")
	pipelineID := fs.String("pipeline", "", "the pipeline to serve (its 64-hex id)")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash the pipeline must run (repeatable)")
	trust := trustFlags(fs)
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
	policy, opts, _, err := trust()
	if err != nil {
		return err
	}
	p := &proxy{base: strings.TrimSuffix(*base, "/"), key: key(), pipelineID: *pipelineID, policy: *policy,
		opts: opts, expect: expect, log: stderr}
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
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "\nserving pipeline %s of %s at http://%s/v1\n", p.pipelineID, p.base, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// proxy is the handler of `cocoon proxy`. It is safe for concurrent use.
type proxy struct {
	base       string // without a trailing slash
	key        string // "" passes each app request's Authorization on
	pipelineID string
	policy     attest.Policy
	opts       attest.EvidenceOptions // trust: the sim root and collateral, if given
	expect     []string
	log        io.Writer // re-verifications are reported here

	// mu serialises verifications, so that requests meeting a rotated key verify the
	// host once, and guards cur.
	mu sync.Mutex
	// cur is the host as last verified, nil when the last verification failed.
	cur *verifiedHost
}

// verifiedHost is a host whose boot and pipeline evidence verified.
type verifiedHost struct {
	// c reaches the host; for an https host its handshakes accept only the TLS key
	// the evidence bound.
	c *client
	// hostKey is the attested key every answer must be signed with.
	hostKey ed25519.PublicKey
}

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
// TLS handshake verified and pinned) and a fresh quote of the pipeline's evidence over
// a random nonce, from the same host key. It writes the reports to w and returns an
// error naming every failed check. Cost: two requests, one of which takes a quote.
func (p *proxy) verify(ctx context.Context, w io.Writer) (*verifiedHost, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyVerifyTimeout)
	defer cancel()
	c, err := newClient(p.base, p.key, &p.policy, p.opts)
	if err != nil {
		return nil, err
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
	failed := failedChecks("boot evidence", r)

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
	failed = append(failed, failedChecks("pipeline evidence", r)...)
	if failed != nil {
		return nil, fmt.Errorf("refusing to proxy to %s, which does not verify: %s", p.base, strings.Join(failed, "; "))
	}
	return &verifiedHost{c: c, hostKey: boot.HostKey}, nil
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

// host returns the verified host, verifying it again when stale is the current one
// (its handshake was refused: the TLS key changed) or when none is.
func (p *proxy) host(ctx context.Context, stale *verifiedHost) (*verifiedHost, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && p.cur != stale {
		return p.cur, nil
	}
	if p.cur != nil {
		p.cur.c.http.CloseIdleConnections()
		fmt.Fprintf(p.log, "the host at %s presented another TLS key: verifying it again\n", p.base)
	}
	v, err := p.verify(ctx, io.Discard)
	p.cur = v
	if err != nil {
		fmt.Fprintln(p.log, err)
		return nil, err
	}
	fmt.Fprintf(p.log, "the host at %s verified again\n", p.base)
	return v, nil
}

// forward sends a request to the pipeline path on the verified host. When the host's
// handshake is refused because its TLS key changed, it verifies the host again and, if
// that passes, retries once: the refused handshake sent nothing.
func (p *proxy) forward(r *http.Request, method, path string, body []byte) (*http.Response, *verifiedHost, error) {
	v, err := p.host(r.Context(), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := p.send(r, v, method, path, body)
	if errors.Is(err, attest.ErrRATLS) {
		if v, err = p.host(r.Context(), v); err != nil {
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
		resp, _, err := p.forward(r, http.MethodGet, "/p/"+p.pipelineID+"/v1/models", nil)
		if err != nil {
			writeProxyError(w, http.StatusBadGateway, "host_not_verified", err.Error())
			return
		}
		defer resp.Body.Close()
		passThrough(w, resp)
	default:
		writeProxyError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("%s %s: this proxy serves POST /v1/chat/completions and GET /v1/models", r.Method, r.URL.Path))
	}
}

// chat forwards a chat completion and checks the host's signature of the answer.
func (p *proxy) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, proxyMaxBody))
	if err != nil {
		writeProxyError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("the request body is not readable or exceeds %d bytes", proxyMaxBody))
		return
	}
	sent, stream, appUsage, err := withStreamUsage(body)
	if err != nil {
		writeProxyError(w, http.StatusBadRequest, "invalid_request", "the request body is not a JSON object: "+err.Error())
		return
	}
	resp, v, err := p.forward(r, http.MethodPost, "/p/"+p.pipelineID+"/v1/chat/completions", sent)
	if err != nil {
		writeProxyError(w, http.StatusBadGateway, "host_not_verified", err.Error())
		return
	}
	defer resp.Body.Close()
	a := answer{hostKey: v.hostKey, request: sent, pipelineID: p.pipelineID}
	switch {
	case resp.StatusCode != http.StatusOK:
		// The host's errors are not signed, and carry no answer.
		passThrough(w, resp)
	case stream:
		a.relayStream(w, resp.Body, appUsage)
	default:
		a.relayCompletion(w, resp)
	}
}

// withStreamUsage returns the body to send for an app's request body: for a stream,
// one with stream_options.include_usage set, since the signature covers the usage
// and only the usage chunk carries it. It also reports whether the request streams
// and whether the app itself asked for the usage chunk (the proxy drops it if not).
func withStreamUsage(body []byte) (sent []byte, stream, appUsage bool, err error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, false, false, err
	}
	var opts struct {
		Stream        bool `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(body, &opts); err != nil {
		return nil, false, false, err
	}
	if !opts.Stream || opts.StreamOptions.IncludeUsage {
		return body, opts.Stream, true, nil
	}
	so := map[string]json.RawMessage{}
	if raw, ok := req["stream_options"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &so); err != nil {
			return nil, false, false, fmt.Errorf("stream_options: %w", err)
		}
	}
	so["include_usage"] = json.RawMessage("true")
	if req["stream_options"], err = json.Marshal(so); err != nil {
		return nil, false, false, err
	}
	sent, err = json.Marshal(req)
	return sent, true, false, err
}

// answer is what checking one answer's signature needs.
type answer struct {
	hostKey    ed25519.PublicKey
	request    []byte // the body as sent to the host
	pipelineID string
}

// usage is the usage member of an answer or of a stream's usage chunk.
type usage struct {
	PromptTokens     uint64 `json:"prompt_tokens"`
	CompletionTokens uint64 `json:"completion_tokens"`
}

func (a answer) verify(content string, u *usage, signature string) error {
	if signature == "" {
		return fmt.Errorf("%w: the host sent none", attest.ErrResponseSignature)
	}
	if u == nil {
		return fmt.Errorf("%w: the signed answer reports no usage, which the signature covers", attest.ErrResponseSignature)
	}
	return attest.VerifyResponse(a.hostKey, a.request, content, a.pipelineID, u.PromptTokens, u.CompletionTokens, signature)
}

// relayCompletion answers with a non-streaming completion once its Cocoon-Signature
// verifies, and with a 502 otherwise: the app sees no byte of an unverified answer.
func (a answer) relayCompletion(w http.ResponseWriter, resp *http.Response) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, proxyMaxBody+1))
	if err != nil || len(b) > proxyMaxBody {
		writeProxyError(w, http.StatusBadGateway, "host_error", fmt.Sprintf("the host's answer is unreadable or exceeds %d bytes", proxyMaxBody))
		return
	}
	var c struct {
		Choices []struct {
			Message struct {
				Content json.RawMessage `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		writeProxyError(w, http.StatusBadGateway, "host_error", "the host's answer is not a chat completion")
		return
	}
	// As the host signs it: the text of choices[0].message.content, "" when it is
	// absent or not a string.
	var content string
	if len(c.Choices) > 0 {
		json.Unmarshal(c.Choices[0].Message.Content, &content)
	}
	signature := resp.Header.Get(attest.ResponseSignatureHeader)
	if err := a.verify(content, c.Usage, signature); err != nil {
		writeProxyError(w, http.StatusBadGateway, "unverified_response", unverified(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(attest.ResponseSignatureHeader, signature)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// isReceiptEvent reports whether data is a billing host's receipt event: a chunk with
// no choices and a cocoon_receipt member (see settle.ReceiptHeader).
func isReceiptEvent(data string) bool {
	var ev struct {
		Choices []json.RawMessage `json:"choices"`
		Receipt json.RawMessage   `json:"cocoon_receipt"`
	}
	return json.Unmarshal([]byte(data), &ev) == nil && ev.Choices != nil && len(ev.Choices) == 0 && len(ev.Receipt) > 0
}

// relayStream forwards a stream's chunks as they arrive, collecting the delta text,
// and checks the signature of the chunk that carries it. It ends the stream with
// "data: [DONE]" only after the signature verified; otherwise (no signature, a bad one,
// data after it other than a billing host's receipt event, a stream cut short) with an
// error event, after chunks the app has already received. The usage chunk, which the proxy asks for, is dropped when the app
// did not ask for it. An error event of the host ends the stream as the host sent it.
func (a answer) relayStream(w http.ResponseWriter, body io.Reader, appUsage bool) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(data string) {
		io.WriteString(w, "data: "+data+"\n\n")
		rc.Flush()
	}
	fail := func(message string) {
		b, _ := json.Marshal(proxyError(message, "unverified_response"))
		send(string(b))
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), proxyMaxEvent)
	var text strings.Builder
	signed := false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue // the blank line between events
		}
		switch {
		case data == "[DONE]" && signed:
			send(data)
			return
		case data == "[DONE]":
			fail(unverified(fmt.Errorf("%w: the stream ended without one", attest.ErrResponseSignature)))
			return
		case signed && isReceiptEvent(data):
			send(data) // a billing host's receipt: no content, outside the signature
			continue
		case signed:
			fail(unverified(fmt.Errorf("%w: the host sent data after the signed chunk", attest.ErrResponseSignature)))
			return
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content *string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage     *usage          `json:"usage"`
			Signature string          `json:"cocoon_signature"`
			Error     json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			fail("the host sent an event that is not a chat completion chunk")
			return
		}
		if chunk.Error != nil {
			send(data) // the host's own failure: unsigned, and the end of the stream
			return
		}
		for _, c := range chunk.Choices {
			if c.Delta.Content != nil {
				text.WriteString(*c.Delta.Content)
			}
		}
		if chunk.Signature != "" {
			if err := a.verify(text.String(), chunk.Usage, chunk.Signature); err != nil {
				fail(unverified(err))
				return
			}
			signed = true
			if chunk.Usage != nil && !appUsage {
				continue
			}
		}
		send(data)
	}
	if err := sc.Err(); err != nil {
		fail("the host's stream broke off before its signature: " + err.Error())
		return
	}
	fail("the host's stream ended before its signature and \"data: [DONE]\"")
}

// unverified words a failed signature check for the app.
func unverified(err error) string {
	return "the answer is not signed by the attested host key, so it was not delivered as verified: " + err.Error()
}

// passThrough copies the host's answer as it is.
func passThrough(w http.ResponseWriter, resp *http.Response) {
	for _, name := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(name); v != "" {
			w.Header().Set(name, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, proxyMaxBody))
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
