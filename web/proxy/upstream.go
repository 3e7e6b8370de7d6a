package proxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/client"
	"github.com/cocoonhost/cocoon/web/e2e"
)

const (
	// nonceBytes is the length of the nonce of each pipeline evidence request.
	nonceBytes = 32
	// verifyTimeout bounds one verification: two evidence requests, one a fresh
	// quote, and the waits the host asks for.
	verifyTimeout = 2 * time.Minute
	// healthTimeout bounds one health check (GET /readyz) and one price list fetch.
	healthTimeout = 10 * time.Second
)

// state is where a host stands in the proxy's routing.
type state int

const (
	stateNew        state = iota // not verified yet
	stateReady                   // verified and healthy: requests go to it
	stateDown                    // unreachable, or not ready: retried with backoff
	stateRefused                 // failed a verification check: retried with backoff
	stateNoPipeline              // does not have the pipeline: retried with backoff
	stateGone                    // the source no longer lists it
)

func (s state) String() string {
	return [...]string{"new", "ready", "down", "refused", "lacks the pipeline", "gone"}[s]
}

// errNotVerified marks a verification whose checks failed, as opposed to one that
// could not be made (the host unreachable).
var errNotVerified = errors.New("does not verify")

// verified is a host whose boot and pipeline evidence verified.
type verified struct {
	// conn reaches the host; for an https host its handshakes accept only the TLS key
	// the evidence bound.
	conn *conn
	// hostKey is the attested key every answer must be signed with.
	hostKey ed25519.PublicKey
	// settlementKey is the settlement key the boot event log measures; nil for a
	// host that measures none (it cannot bill).
	settlementKey ed25519.PublicKey
	// model is the model of the pipeline's attested manifest.
	model string
	// e2e are the attested keys requests are sealed to; nil with WithPlaintext.
	e2e *e2e.PublicKeys
}

// upstream is one host the proxy routes to, its verification, health, price and load.
type upstream struct {
	p    *Proxy
	info Host
	// stop ends the host's health loop (the source dropped it, or the proxy closes).
	stop context.CancelFunc

	// verifying serialises verifications, so that requests that meet a restarted host
	// and the health loop verify it once.
	verifying sync.Mutex

	// mu guards the fields below; it is never held across a request to the host.
	mu         sync.Mutex
	cur        *verified // the host as last verified; nil unless ready
	last       *verified // the host as last verified, ready or not (for the key-change log)
	state      state
	failures   int       // consecutive failed attempts, for the backoff
	retryAt    time.Time // when a host out of routing is tried again
	verifiedAt time.Time
	// prices is the host's price list, verified against its attested settlement key;
	// nil for a host that does not bill.
	prices *settle.PriceList

	inflight atomic.Int64 // requests under way
	latency  atomic.Int64 // moving average of the time to the answer's headers, ns
	sampled  atomic.Int64 // when latency last took a sample, Unix ns
	served   atomic.Int64 // requests answered (by this host's answer, any status)
}

// snapshot is what routing reads of a host, under its lock.
type snapshot struct {
	v      *verified
	prices *settle.PriceList
}

// ready returns the host as verified and its prices, or ok false when it is out of
// routing.
func (u *upstream) ready() (snapshot, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return snapshot{u.cur, u.prices}, u.state == stateReady
}

// bills reports whether the host bills (it published a price list).
func (u *upstream) bills() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.prices != nil
}

// setState moves the host to s for why, logging the change, and schedules the next
// attempt of a host out of routing with exponential backoff.
func (u *upstream) setState(s state, why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.state
	u.state = s
	if s == stateReady {
		u.failures = 0
		if old != s {
			fmt.Fprintf(u.p.cfg.log, "host %s: %s -> ready\n", u.info.URL, old)
		}
		return
	}
	u.cur = nil
	wait := u.p.cfg.backoffMin << min(u.failures, 20)
	wait = min(wait, u.p.cfg.backoffMax)
	u.failures++
	u.retryAt = time.Now().Add(wait)
	fmt.Fprintf(u.p.cfg.log, "host %s: %s -> %s: %s; trying again in %s\n", u.info.URL, old, s, why, wait)
}

// verify checks the host's boot evidence (over https, also that it is the evidence the
// TLS handshake verified and pinned) under each trusted simulator root in turn until
// one passes, then a fresh quote of the pipeline's evidence over a random nonce, from
// the same host key, and the settlement key a Source named. It writes the reports to
// w. A failed check is an error wrapping errNotVerified that names every failed check;
// a host without the pipeline is a *client.Error for which notFound holds. Cost: a boot
// evidence request per root tried, one pipeline quote, and the waits a host at its
// quote rate asks for.
func (u *upstream) verify(ctx context.Context, w io.Writer) (*verified, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	cfg := &u.p.cfg
	refuse := func(failed []string) error {
		return fmt.Errorf("refusing to proxy to %s, which %w: %s", u.info.URL, errNotVerified, strings.Join(failed, "; "))
	}
	var (
		c      *conn
		boot   *attest.Evidence
		opts   attest.EvidenceOptions
		failed []string
	)
	for _, root := range cfg.roots() {
		opts = cfg.opts
		opts.SimRoot = root
		var err error
		if c, err = dial(u.info.URL, u.evidenceKey(), cfg.policy, opts, cfg.log, u.dialControl()); err != nil {
			return nil, err
		}
		if boot, err = c.Evidence(ctx, "/v1/attestation"); err != nil {
			c.close()
			if errors.Is(err, attest.ErrRATLS) && len(cfg.simRoots) > 1 {
				failed = append(failed, err.Error())
				continue // the handshake's evidence is under another root
			}
			return nil, err
		}
		r, err := attest.VerifyEvidence(*boot, cfg.policy, opts)
		if err != nil {
			c.close()
			return nil, err
		}
		if c.ratls != nil {
			r.Checks = append(r.Checks, client.RATLSCheck(c.ratls, boot))
		}
		fmt.Fprintf(w, "boot evidence of %s\n%s", u.info.URL, r)
		if failed = failedChecks("boot evidence", r); failed == nil {
			break
		}
		c.close()
	}
	if failed != nil {
		return nil, refuse(failed) // no quote is spent on a host that failed
	}
	v := &verified{conn: c, hostKey: boot.HostKey}
	if err := cfg.checkE2E(v, boot); err != nil {
		return nil, refuse([]string{err.Error()})
	}
	events, err := attest.ParseEventLog(boot.EventLog) // VerifyEvidence parsed and replayed it
	if err != nil {
		return nil, err
	}
	v.settlementKey = attest.SettlementKeyOf(events)
	if want := u.info.SettlementKey; want != nil && !want.Equal(v.settlementKey) {
		return nil, refuse([]string{fmt.Sprintf("settlement key: the host list names %x, the boot evidence measures %x", []byte(want), []byte(v.settlementKey))})
	}
	if failed := u.info.Record.check(boot, events); failed != nil {
		return nil, refuse(failed)
	}

	nonce := make([]byte, nonceBytes)
	rand.Read(nonce) // crypto/rand.Read never fails.
	ev, err := c.Evidence(ctx, "/v1/pipelines/"+cfg.pipelineID+"/attestation?nonce="+url.QueryEscape(hex.EncodeToString(nonce)))
	if err != nil {
		return nil, err
	}
	opts.PipelineID, opts.Nonce, opts.ExpectModules, opts.HostKey = cfg.pipelineID, nonce, cfg.expect, boot.HostKey
	r, err := attest.VerifyEvidence(*ev, cfg.policy, opts)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "\npipeline evidence of %s\n%s", cfg.pipelineID, r)
	if failed := failedChecks("pipeline evidence", r); failed != nil {
		return nil, refuse(failed)
	}
	var manifest struct {
		Model string `json:"model"`
	}
	json.Unmarshal(ev.Manifest, &manifest) // it verified: it hashes to the pipeline id
	v.model = manifest.Model
	return v, nil
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

// admit verifies the host (at Start: reports to w) and its price list, and puts it in
// routing when both pass; otherwise it is out, with the reason logged, until its
// health loop tries again.
func (u *upstream) admit(ctx context.Context, w io.Writer) error {
	u.verifying.Lock()
	defer u.verifying.Unlock()
	return u.admitLocked(ctx, w, "")
}

// reverify verifies the host again, because of why, unless it was verified again since
// stale was current; it returns the host as verified now. A host out of routing is not
// verified here (its health loop does, with backoff), so that requests cannot make a
// failing host spend quotes.
func (u *upstream) reverify(ctx context.Context, stale *verified, why string) (*verified, error) {
	u.verifying.Lock()
	defer u.verifying.Unlock()
	u.mu.Lock()
	cur, st := u.cur, u.state
	u.mu.Unlock()
	switch {
	case st != stateReady:
		return nil, fmt.Errorf("the host at %s is out of routing (%s)", u.info.URL, st)
	case cur != stale:
		return cur, nil // another request verified it again meanwhile
	}
	if err := u.admitLocked(ctx, io.Discard, why); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur, nil
}

// admitLocked is admit with u.verifying held; why, when set, is logged as the reason.
func (u *upstream) admitLocked(ctx context.Context, w io.Writer, why string) error {
	log := u.p.cfg.log
	if why != "" {
		fmt.Fprintf(log, "%s: verifying the host at %s again\n", why, u.info.URL)
	}
	v, err := u.verify(ctx, w)
	var prices *settle.PriceList
	if err == nil {
		prices, err = u.priceList(ctx, v)
	}
	var private *privateEndpointError
	switch {
	case errors.As(err, &private):
		err = fmt.Errorf("refusing to proxy to %s, which %w: %w", u.info.URL, errNotVerified, private)
		u.setState(stateRefused, err.Error())
		return err
	case errors.Is(err, errNotVerified):
		u.setState(stateRefused, err.Error())
		return err
	case notFound(err):
		err = fmt.Errorf("the host at %s does not have pipeline %s: %w (push it there)", u.info.URL, u.p.cfg.pipelineID, err)
		u.setState(stateNoPipeline, err.Error())
		return err
	case err != nil:
		err = fmt.Errorf("the host at %s could not be verified: %w", u.info.URL, err)
		u.setState(stateDown, err.Error())
		return err
	}
	u.mu.Lock()
	old := u.last
	if u.cur != nil {
		u.cur.conn.close()
	}
	u.cur, u.last, u.prices, u.verifiedAt = v, v, prices, time.Now()
	u.mu.Unlock()
	switch {
	case why == "":
	case old != nil && !old.hostKey.Equal(v.hostKey):
		fmt.Fprintf(log, "the host at %s verified again, with a new host key %x (it was %x): it restarted\n", u.info.URL, []byte(v.hostKey), []byte(old.hostKey))
	default:
		fmt.Fprintf(log, "the host at %s verified again, with the same host key\n", u.info.URL)
	}
	u.setState(stateReady, "")
	return nil
}

// priceList fetches the host's price list: nil for a host that does not bill (its boot
// evidence measures no settlement key, and it answers 404), else the list, which must
// be of the format this proxy reads and signed by the settlement key its boot evidence
// measures (settle.PriceList.Verify), and must price the pipeline's model, or the host
// is refused: its prices would not be the attested host's, or it would refuse every
// request. A 404 from a host that measures a settlement key (only a billing host does)
// refuses it too: a relay can answer that 404, and a billing host taken for one that
// does not bill would be routed to as free and failed over from after it charged.
func (u *upstream) priceList(ctx context.Context, v *verified) (*settle.PriceList, error) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	b, err := v.conn.GetBytes(ctx, "/v1/pricing", settle.MaxPriceListBytes)
	switch {
	case notFound(err) && v.settlementKey != nil:
		return nil, fmt.Errorf("the host at %s %w: it measures a settlement key, so it bills, but its price list was not found", u.info.URL, errNotVerified)
	case notFound(err):
		return nil, u.checkPriceHash(nil)
	case err != nil:
		return nil, fmt.Errorf("its price list: %w", err)
	}
	var l settle.PriceList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("its price list is not the expected JSON: %w", err)
	}
	if v.settlementKey == nil {
		return nil, fmt.Errorf("the host at %s %w: it publishes prices but measures no settlement key", u.info.URL, errNotVerified)
	}
	if err := l.Verify(v.settlementKey); err != nil {
		return nil, fmt.Errorf("the host at %s %w: its price list is not signed by its attested settlement key: %w", u.info.URL, errNotVerified, err)
	}
	if err := u.checkPriceHash(&l); err != nil {
		return nil, err
	}
	if _, ok := l.For(v.model); !ok {
		return nil, fmt.Errorf("the host at %s %w: its price list has no price for the pipeline's model %.80q (nor a default)", u.info.URL, errNotVerified, v.model)
	}
	return &l, nil
}

// check is one round of the host's health loop. A host in routing is asked GET /readyz
// and its price list, and verified afresh once the re-verification interval passed; a
// host out of routing is verified again (its backoff has passed).
func (u *upstream) check(ctx context.Context) {
	u.mu.Lock()
	v, st, verifiedAt := u.cur, u.state, u.verifiedAt
	u.mu.Unlock()
	if st != stateReady {
		u.admit(ctx, io.Discard)
		return
	}
	if time.Since(verifiedAt) >= u.p.cfg.reverifyEvery {
		u.verifying.Lock()
		defer u.verifying.Unlock()
		u.admitLocked(ctx, io.Discard, "the re-verification interval passed")
		return
	}
	hctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if _, err := v.conn.GetBytes(hctx, "/readyz", 64<<10); err != nil {
		if ctx.Err() == nil {
			u.setState(stateDown, "its health check failed: "+err.Error())
		}
		return
	}
	prices, err := u.priceList(ctx, v)
	switch {
	case errors.Is(err, errNotVerified):
		u.setState(stateRefused, err.Error())
	case err != nil && ctx.Err() == nil:
		u.setState(stateDown, err.Error())
	case err == nil:
		u.mu.Lock()
		if u.cur == v {
			u.prices = prices
		}
		u.mu.Unlock()
	}
}

// failed takes the host out of routing after a request found it unreachable or cut
// off; its health loop verifies it again after the backoff.
func (u *upstream) failed(err error) {
	u.mu.Lock()
	st := u.state
	u.mu.Unlock()
	if st == stateReady {
		u.setState(stateDown, err.Error())
	}
}

// run is the host's health loop: it checks the host every health interval while it is
// in routing, and tries again a host out of it when its backoff passed, until ctx ends.
func (u *upstream) run(ctx context.Context) {
	for {
		u.mu.Lock()
		wait := u.p.cfg.healthEvery
		if u.state != stateReady {
			wait = time.Until(u.retryAt)
		}
		u.mu.Unlock()
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		u.check(ctx)
	}
}

// observe records an answer's latency to its headers in the host's moving average
// (weight 1/8 for the newest).
func (u *upstream) observe(d time.Duration) {
	u.sampled.Store(time.Now().UnixNano())
	for {
		old := u.latency.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if u.latency.CompareAndSwap(old, next) {
			return
		}
	}
}

// latencyHalfLife is how fast a host's latency figure fades while it gets no request.
const latencyHalfLife = time.Second

// recentLatency is the host's average latency, halved for every latencyHalfLife since
// its last sample: a host that routing passed over because one slow answer raised its
// figure (a cold start) looks fast again soon, gets a request, and is measured anew,
// rather than starving on a figure nothing updates.
func (u *upstream) recentLatency(now time.Time) time.Duration {
	halvings := now.Sub(time.Unix(0, u.sampled.Load())) / latencyHalfLife
	return time.Duration(u.latency.Load() >> min(max(halvings, 0), 62))
}
