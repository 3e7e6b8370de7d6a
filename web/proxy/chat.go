package proxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// HostHeader names, on every answer that comes from a host, the host that answered.
// The proxy sets it; it is not signed.
const HostHeader = "Cocoon-Proxy-Host"

// defaultCompletion is the completion length routing assumes, to order hosts by price,
// for a request that asks for no bound.
const defaultCompletion = 256

// ask is one app request and what routing reads of it.
type ask struct {
	body []byte
	// prompt and completion estimate the request's tokens, to order hosts by what it
	// would cost at each (a quarter of the body's bytes; max_tokens, or
	// defaultCompletion).
	prompt, completion uint64
	// asked is the completion bound the request asks for (0: none), and maxPrice its
	// cap in nanoTON (0: none).
	asked, maxPrice uint64
	idempotencyKey  string
	// route names the idempotency key in Proxy.keys (with the app's credential);
	// the zero keyRoute without a key.
	route keyRoute
}

func newAsk(r *http.Request, body []byte) ask {
	var opts struct {
		MaxTokens           *uint64         `json:"max_tokens"`
		MaxCompletionTokens *uint64         `json:"max_completion_tokens"`
		MaxPrice            json.RawMessage `json:"max_price"`
	}
	json.Unmarshal(body, &opts) // a request the host would refuse is routed as if it asked nothing
	a := ask{body: body, prompt: uint64(len(body) / 4), idempotencyKey: r.Header.Get(settle.IdempotencyKeyHeader)}
	a.route, _ = routeKey(r)
	for _, p := range []*uint64{opts.MaxCompletionTokens, opts.MaxTokens} {
		if p != nil && *p > 0 {
			a.asked = *p
			break
		}
	}
	a.completion = a.asked
	if a.completion == 0 {
		a.completion = defaultCompletion
	}
	a.maxPrice, _ = settle.ParseMaxPrice(opts.MaxPrice) // a bad one: the host answers the 400
	return a
}

// chat forwards a chat completion to the host routing picks, and on to another when
// the attempt failed before any byte reached the app and sending it again cannot
// charge twice (attempt says when); a request whose idempotency key went to a billing
// host, before it came or while it was refused, goes to that host alone (retryAt). When no other host can take it, the app gets the
// refusal of the last host that answered one, or a 502 naming each host's state.
func (p *Proxy) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		(&Error{http.StatusRequestEntityTooLarge, CodeInvalidRequest, fmt.Sprintf("the request body is not readable or exceeds %d bytes", MaxBody)}).Write(w)
		return
	}
	a := newAsk(r, body)
	tried := map[*upstream]bool{}
	var last result
	for {
		// Before each host, not only the first: while a host refused this request,
		// another sending of it under its key (the app's retry) may have gone to a
		// host, which may charge it; only there does the key not charge twice.
		if url := p.keyHost(a); url != "" {
			p.retryAt(w, r, url, a)
			return
		}
		u := p.pick(a, tried)
		if u == nil {
			break
		}
		tried[u] = true
		res := p.attempt(w, r, u, a)
		if !res.retry {
			return
		}
		if res.answer != nil || last.answer == nil {
			last = res // a host's own refusal is a better last word than a failure to reach one
		}
	}
	if last.answer != nil {
		last.answer()
		return
	}
	p.noHost(last.err).Write(w)
}

// keyHost is the URL of the billing host that a's idempotency key was sent to before,
// "" when none was.
func (p *Proxy) keyHost(a ask) string {
	if a.idempotencyKey == "" {
		return ""
	}
	return p.keys.host(a.route)
}

// retryAt sends a request whose idempotency key was sent to the billing host at url
// before to that host alone: only its ledger knows the key, and another host would
// charge the request again. Whatever it answers is the answer; when it is out of
// routing, no longer listed or cannot be reached, the app gets a 502 host_error saying
// so, and may retry later or send the request under a new key.
func (p *Proxy) retryAt(w http.ResponseWriter, r *http.Request, url string, a ask) {
	why := "the host list no longer names it"
	for _, u := range p.snapshot() {
		if u.info.URL != url {
			continue
		}
		if _, ok := u.ready(); !ok {
			why = "it is out of routing now"
			break
		}
		res := p.attempt(w, r, u, a)
		switch {
		case !res.retry:
			return
		case res.answer != nil:
			res.answer()
			return
		}
		why = res.err.Error()
	}
	(&Error{http.StatusBadGateway, CodeHostError, fmt.Sprintf("a request with this Idempotency-Key went to the host at %s, which may have charged it, "+
		"so the proxy sends its retries to that host only, and %s: retry later, or send the request under a new key", url, why)}).Write(w)
}

// pick returns the host to try next, among the hosts in routing not yet tried: the
// cheapest for this request at each host's published prices for the pipeline's model
// (a host that does not bill costs 0), and among equally cheap ones the less loaded of two picked at random
// (requests in flight times latency), or, for a request with an idempotency key, the
// one the key hashes to, so that the app's retries of it reach the same host (each
// host's ledger knows only its own keys) through another proxy too; through this one,
// keyRoutes pins them even when prices change (chat). A billing host whose price for the
// completion alone exceeds the request's max_price is skipped: it would refuse it.
func (p *Proxy) pick(a ask, tried map[*upstream]bool) *upstream {
	type candidate struct {
		u     *upstream
		price uint64
	}
	var tier []candidate
	for _, u := range p.snapshot() {
		s, ok := u.ready()
		if !ok || tried[u] {
			continue
		}
		var price uint64
		if l := s.prices; l != nil {
			q, ok := l.Quote(s.v.model) // the pipeline's model; priceList refuses a host whose list lacks it
			if !ok || a.maxPrice > 0 && q.Prices.Cost(settle.Usage{CompletionTokens: a.asked}, q.LoadMilli, math.MaxUint64) > a.maxPrice {
				continue
			}
			price = q.Prices.Cost(settle.Usage{PromptTokens: a.prompt, CompletionTokens: a.completion}, q.LoadMilli, math.MaxUint64)
		}
		switch {
		case len(tier) == 0 || price < tier[0].price:
			tier = append(tier[:0], candidate{u, price})
		case price == tier[0].price:
			tier = append(tier, candidate{u, price})
		}
	}
	switch {
	case len(tier) == 0:
		return nil
	case len(tier) == 1:
		return tier[0].u
	case a.idempotencyKey != "":
		best, bestHash := tier[0].u, uint64(0)
		for _, c := range tier {
			h := sha256.Sum256([]byte(a.idempotencyKey + "\x00" + c.u.info.URL))
			if v := binary.BigEndian.Uint64(h[:]); v >= bestHash {
				best, bestHash = c.u, v
			}
		}
		return best
	}
	i := rand.IntN(len(tier))
	j := rand.IntN(len(tier) - 1)
	if j >= i {
		j++
	}
	if now := time.Now(); load(tier[j].u, now) < load(tier[i].u, now) {
		i = j
	}
	return tier[i].u
}

// load is a host's load for routing: requests in flight (plus this one) times its
// recent latency in nanoseconds (plus a millisecond, so that a host not measured yet
// still counts what it has in flight), in integers, saturating at 2⁶⁴−1.
func load(u *upstream, now time.Time) uint64 {
	hi, lo := bits.Mul64(uint64(max(u.inflight.Load(), 0)+1), uint64(max(u.recentLatency(now), 0)+time.Millisecond))
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// result is how an attempt at one host ended.
type result struct {
	// retry says that nothing reached the app and that sending the request to
	// another host cannot charge twice: the host refused it before admission, it
	// never received it, or it does not bill.
	retry bool
	// answer, with retry, gives the app this host's answer when no other host takes
	// the request; nil when there is none to give (err says why).
	answer func()
	err    error
	// proof is what the answer proves about a billing host's charge (keyMemory);
	// chargeUnknown unless an answer that is the host's says more.
	proof chargeProof
}

// attempt sends the request to u and relays u's answer, or says why another host may
// be tried instead. The app's idempotency key, sent to a billing host, is in flight
// there meanwhile, and its route is then kept by what the answer proved (keyMemory).
func (p *Proxy) attempt(w http.ResponseWriter, r *http.Request, u *upstream, a ask) (res result) {
	s, ok := u.ready()
	if !ok {
		return result{retry: true, err: fmt.Errorf("the host at %s left routing", u.info.URL)}
	}
	u.inflight.Add(1)
	defer u.inflight.Add(-1)
	an := &answer{p: p, u: u, v: s.v, request: a.body, bills: s.prices != nil, w: w, r: r}
	if an.bills && a.idempotencyKey != "" {
		p.keys.begin(a.route, u.info.URL)
		defer func() { p.keys.end(a.route, u.info.URL, an.sent, res.proof) }()
	}
	// The request's idempotency key: the app's, or for a billing host one the proxy
	// makes, sealed with it, so that sending it again after an e2e_session_unknown
	// (unsigned: a relay can forge it for a request that ran) cannot charge it twice.
	key := a.idempotencyKey
	if key == "" && an.bills && an.v.e2e != nil {
		key = e2e.NewIdempotencyKey("proxy")
	}
	// A request sent whole once may have run and been charged, whatever its sending
	// again does: a relay can forge the refusal that has it sent again (a session
	// unknown, a request that did not open) and then break the connection before the
	// second is written. So a failed attempt is judged by an.sent, never by its last
	// sending alone.
	send := func(v *verified) (*http.Response, *e2e.Client, error) {
		resp, opener, sent, err := p.send(r, v, a.body, key)
		an.sent = an.sent || sent
		return resp, opener, err
	}
	start := time.Now()
	resp, opener, err := send(an.v)
	if errors.Is(err, attest.ErrRATLS) {
		v, verr := u.reverify(r.Context(), an.v, "the host presented another TLS key")
		if verr != nil {
			return result{retry: true, err: verr} // the refused handshake sent nothing
		}
		an.v = v
		resp, opener, err = send(v)
	}
	if err != nil {
		if r.Context().Err() != nil {
			return result{} // the app went away
		}
		return an.cut(an.v.conn.TransportError(err), an.sent, false)
	}
	refusal := ""
	if opener != nil {
		refusal = e2e.RefusalCode(resp, MaxBody+1) // relayWhole refuses more
	}
	if opener != nil && opener.Retry(refusal) {
		// The host holds no such session (forgotten, expired, or it restarted): sent
		// once more, sealed to its key, with the same credentials (web/E2E.md §8).
		resp.Body.Close()
		if resp, opener, err = send(an.v); err != nil {
			return an.cut(an.v.conn.TransportError(err), an.sent, false)
		}
		refusal = e2e.RefusalCode(resp, MaxBody+1)
	}
	if refusal == "e2e_invalid" {
		// The host could not open the request: a restarted host has new keys. Only a
		// host verified again with other keys gets it again, sealed to them: the
		// process that answered cannot have run a request it could not open, but a
		// relay could forge this unsigned refusal for one that ran.
		resp.Body.Close()
		v, verr := u.reverify(r.Context(), an.v, "the host could not open a request sealed to its attested key")
		switch {
		case verr != nil:
			(&Error{http.StatusBadGateway, CodeHostError, "the host could not open the request sealed to its attested key, and verifying it again failed: " + verr.Error()}).Write(w)
			return result{}
		case v.e2e == nil || bytes.Equal(v.e2e.MLKEM768X25519, an.v.e2e.MLKEM768X25519):
			(&Error{http.StatusBadGateway, CodeHostError, "the host could not open the request sealed to its attested key, and has not restarted with new keys"}).Write(w)
			return result{}
		}
		an.v = v
		if resp, opener, err = send(v); err != nil {
			return an.cut(an.v.conn.TransportError(err), an.sent, false)
		}
	}
	u.observe(time.Since(start))
	defer resp.Body.Close()
	if opener != nil {
		if err := opener.OpenResponse(resp, MaxBody); err != nil {
			(&Error{http.StatusBadGateway, CodeUnverified, "the host's sealed answer does not open, so it was not delivered: " + err.Error()}).Write(w)
			return result{}
		}
	}
	body := &cutReader{r: resp.Body}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "text/event-stream" {
		return an.relayStream(body)
	}
	return an.relayWhole(resp, body)
}

// send makes one request of the app's r to the host v, with idempotencyKey if any,
// sealed to its end-to-end key unless v takes plaintext, and reports whether the
// request was written whole at least once: a request the host did not receive whole it
// cannot have acted on. opener opens the answer of a sealed request (nil for plaintext).
func (p *Proxy) send(r *http.Request, v *verified, body []byte, idempotencyKey string) (resp *http.Response, opener *e2e.Client, sent bool, err error) {
	var wrote atomic.Bool
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		// Go's transport writes a request with an Idempotency-Key again on a new
		// connection when a reused one closed before the answer: a write failing then
		// does not undo the one the host received (and may have charged).
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
	path := "/p/" + p.cfg.pipelineID + "/v1/chat/completions"
	header := http.Header{"Content-Type": {"application/json"}}
	if p.cfg.apiKey != "" {
		header.Set("Authorization", "Bearer "+p.cfg.apiKey)
	} else if auth := r.Header.Get("Authorization"); auth != "" {
		header.Set("Authorization", auth)
	}
	if idempotencyKey != "" {
		header.Set(settle.IdempotencyKeyHeader, idempotencyKey)
	}
	sealed, opener, err := p.seal(v, path, header, body)
	if err != nil {
		return nil, nil, false, err
	}
	if opener != nil {
		body, header = sealed, http.Header{"Content-Type": {e2e.ContentType}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.conn.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, false, err
	}
	req.Header = header
	resp, err = v.conn.http.Do(req)
	return resp, opener, wrote.Load(), err
}

// cutReader records the first error of reading a host's answer other than its clean
// end: the connection broke (the host died, or the network), as opposed to an answer
// that arrived whole and does not verify.
type cutReader struct {
	r   io.Reader
	err error
}

func (c *cutReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	// A sealed record that does not open is an altered answer, not a broken connection.
	if err != nil && err != io.EOF && !errors.Is(err, e2e.ErrE2E) && c.err == nil {
		c.err = err
	}
	return n, err
}

// answer is one answer on its way from a host to the app.
type answer struct {
	p       *Proxy
	u       *upstream
	v       *verified // as verified when the request was sent
	request []byte    // the body as sent to the host
	bills   bool      // the host bills: a request it received may have been charged
	sent    bool      // the request reached the host whole, at least once
	w       http.ResponseWriter
	r       *http.Request
}

func (a *answer) verifier(key ed25519.PublicKey) attest.ResponseVerifier {
	return attest.ResponseVerifier{HostKey: key, Request: a.request, PipelineID: a.p.cfg.pipelineID}
}

// recheck is what to do when the answer's signature does not verify with the host key
// it was sent under: verify the host again (a restarted host has a new key) and, when
// its key is new, check the answer with it (check). The error says why the answer is
// not the attested host's.
func (a *answer) recheck(ctx context.Context, mismatch error, check func(ed25519.PublicKey) error) error {
	v, err := a.u.reverify(ctx, a.v, "an answer's signature does not verify with the attested host key")
	switch {
	case err != nil:
		return fmt.Errorf("%w; and %w", mismatch, err)
	case v.hostKey.Equal(a.v.hostKey):
		return fmt.Errorf("%w (the host's key has not changed: the answer was altered on its way)", mismatch)
	}
	a.v = v
	return check(v.hostKey)
}

// cut ends an attempt whose connection to the host failed (err), the request sent
// whole or not, and part of a stream released to the app (started) or not. The host
// leaves routing until its health loop verifies it again. Another host may be tried
// when nothing reached the app and either the host never received the request whole
// or it does not bill; a billing host may have charged a request it received, and each
// host's ledger is its own, so the request is not sent elsewhere. A stream under way
// ends with an error event.
func (a *answer) cut(err error, sent, started bool) result {
	a.u.failed(err)
	switch {
	case started:
		a.w.Write((&Error{http.StatusBadGateway, CodeHostError, "the host's stream broke off: " + err.Error()}).event())
		http.NewResponseController(a.w).Flush()
		return result{}
	case !sent || !a.bills:
		return result{retry: true, err: err}
	}
	(&Error{http.StatusBadGateway, CodeHostError, "the host failed after it received the request, which it may have charged; " +
		"the proxy does not send it to another host, which would charge it again: " + err.Error()}).Write(a.w)
	return result{}
}

// refusedUncharged reports whether a verified answer is a refusal another host may be
// asked instead of: a host that does not bill failed (a 5xx, or a 429); a billing host
// refused before admission (at capacity, or over the request's max_price), and the
// refusal is this request's (proof, chargeRefused). A refusal the host signed without
// the request (at capacity, before it read the body) could be a genuine one a relay
// replays in place of an answer the host charged: it counts only over RA-TLS, where no
// relay can inject it.
func (a *answer) refusedUncharged(status int, body []byte, proof chargeProof) bool {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(body, &e)
	if !a.bills {
		return status >= 500 || status == http.StatusTooManyRequests
	}
	return (e.Error.Code == "over_capacity" || e.Error.Code == settle.CodeMaxPrice) && proof == chargeRefused
}

// forThisRequest reports whether an answer is the host's answer to this request, which
// no relay can have put in place of another: received over RA-TLS, or (an answer whose
// signature verified) signed over this request's body. An answer the host signed before it
// read the body (at capacity, a refused credential) binds no request, and a relay can
// replay it. Cost: one ed25519 verification over plain HTTP.
func (a *answer) forThisRequest(status int, retryAfter string, body []byte, signature string) bool {
	if a.v.conn.ratls != nil {
		return true
	}
	other := a.verifier(a.v.hostKey)
	other.Request = append([]byte("not "), a.request...)
	return other.VerifyBody(status, retryAfter, body, signature) != nil // it verifies only for this request
}

// relayWhole answers with a non-streaming answer (a chat.completion or the host's
// error) once its Cocoon-Signature verifies over its status, Retry-After and body, and
// with a 502 otherwise: the app sees no byte of an unverified answer.
func (a *answer) relayWhole(resp *http.Response, body *cutReader) result {
	b, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	switch {
	case body.err != nil:
		return a.cut(fmt.Errorf("reading the answer of the host at %s: %w", a.u.info.URL, body.err), true, false)
	case err != nil || len(b) > MaxBody:
		(&Error{http.StatusBadGateway, CodeHostError, fmt.Sprintf("the host's answer is unreadable or exceeds %d bytes", MaxBody)}).Write(a.w)
		return result{}
	}
	retryAfter, signature := resp.Header.Get("Retry-After"), resp.Header.Get(attest.ResponseSignatureHeader)
	check := func(key ed25519.PublicKey) error {
		return a.verifier(key).VerifyBody(resp.StatusCode, retryAfter, b, signature)
	}
	err = check(a.v.hostKey)
	if errors.Is(err, attest.ErrSignatureMismatch) {
		err = a.recheck(a.r.Context(), err, check)
	}
	receipt := resp.Header.Get(settle.ReceiptHeader)
	// What the answer proves of a billing host's charge. Over RA-TLS an unsigned answer
	// is the host's too (the refusal of a sealed request it did not record, such as a
	// credential it refused, is plaintext and unsigned: web/E2E.md §4); over http only a
	// verified one is.
	proof := chargeUnknown
	if a.bills && (err == nil || a.v.conn.ratls != nil) {
		proof = proveCharge(resp.StatusCode, receipt != "", func() bool { return a.forThisRequest(resp.StatusCode, retryAfter, b, signature) })
	}
	if err != nil {
		(&Error{http.StatusBadGateway, CodeUnverified, unverified(err)}).Write(a.w)
		return result{proof: proof}
	}
	a.u.served.Add(1)
	write := func() {
		h := a.w.Header()
		h.Set("Content-Type", "application/json") // what the host sends; its own is not signed
		h.Set(attest.ResponseSignatureHeader, signature)
		h.Set(HostHeader, a.u.info.URL)
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		if receipt != "" {
			h.Set(settle.ReceiptHeader, receipt) // signed by the settlement key itself
		}
		a.w.WriteHeader(resp.StatusCode)
		a.w.Write(b)
	}
	if resp.StatusCode != http.StatusOK && a.refusedUncharged(resp.StatusCode, b, proof) {
		return result{retry: true, answer: write, err: fmt.Errorf("the host at %s answered %s", a.u.info.URL, resp.Status), proof: proof}
	}
	write()
	return result{proof: proof}
}

// relayStream reads a stream's events and checks them against the signature event at
// its end (attest.SignedStream): every event, the receipt of a billing host and an
// error event included, is covered by it, in order. In verified release it holds the
// events and releases them, the host's bytes exactly, once the stream verified to its
// end; a stream that does not verify is a 502, and the app gets none of it. In live
// release it forwards each event as it arrives; a stream that then does not verify
// ends with an error event "unverified_response" instead of what the host sent after
// its signature. A stream whose connection broke before anything reached the app may
// go to another host (cut).
func (a *answer) relayStream(body *cutReader) result {
	live := a.p.cfg.release == ReleaseLive
	s := a.verifier(a.v.hostKey).ReadStream(body, MaxBody)
	var held bytes.Buffer
	started := false
	start := func() {
		h := a.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set(HostHeader, a.u.info.URL)
		a.w.WriteHeader(http.StatusOK)
		started = true
	}
	for {
		ev, err := s.Next()
		if errors.Is(err, attest.ErrSignatureMismatch) {
			err = a.recheck(a.r.Context(), err, func(key ed25519.PublicKey) (err error) {
				ev, err = s.RetryWithKey(key)
				return err
			})
		}
		switch {
		case err == io.EOF:
			a.u.served.Add(1)
			if !live {
				start()
				a.w.Write(held.Bytes())
			}
			return result{proof: chargeAdmitted} // a 200 stream, verified to its end
		case err != nil && body.err != nil:
			return a.cut(fmt.Errorf("reading the stream of the host at %s: %w", a.u.info.URL, body.err), true, started)
		case err != nil && !started:
			(&Error{http.StatusBadGateway, CodeUnverified, unverified(err)}).Write(a.w)
			return result{}
		case err != nil:
			a.w.Write((&Error{http.StatusBadGateway, CodeUnverified, unverified(err)}).event())
			http.NewResponseController(a.w).Flush()
			return result{}
		case !live:
			if held.Write(ev.Raw); held.Len() > MaxBody {
				(&Error{http.StatusBadGateway, CodeUnverified,
					fmt.Sprintf("the host's stream exceeds the %d bytes the proxy holds until its signature verifies (release live forwards it as it arrives)", MaxBody)}).Write(a.w)
				return result{}
			}
			continue
		case !started:
			start()
		}
		a.w.Write(ev.Raw)
		http.NewResponseController(a.w).Flush()
	}
}

// unverified words a failed signature check for the app.
func unverified(err error) string {
	return "the answer is not signed by the attested host key, so it was not delivered: " + err.Error()
}
