package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxEvidenceBytes bounds the JSON evidence ParseEvidence accepts: a quote of a few KiB,
// an event log of at most MaxEventLogBytes and a manifest whose module configs may
// reach a few MiB together.
const MaxEvidenceBytes = 4 << 20

// ErrEvidenceEncoding is the error of ParseEvidence.
var ErrEvidenceEncoding = errors.New("evidence: malformed encoding")

// errManifestEncoding wraps the reasons a pipeline manifest in evidence is unreadable.
var errManifestEncoding = errors.New("not a canonical manifest")

// ParseEvidence decodes the JSON evidence a host serves (see Evidence). It refuses input
// larger than MaxEvidenceBytes, unknown members and trailing data, with errors wrapping
// ErrEvidenceEncoding. It checks nothing else: VerifyEvidence does, one check at a time.
func ParseEvidence(b []byte) (*Evidence, error) {
	var ev Evidence
	if err := decodeStrict(b, MaxEvidenceBytes, &ev, ErrEvidenceEncoding, "evidence"); err != nil {
		return nil, err
	}
	return &ev, nil
}

// Check is one line of a verification report.
type Check struct {
	// Name says what was checked, such as "quote signature chain" or "MRTD".
	Name string
	// OK is false when the check failed: the evidence must not be trusted.
	OK bool
	// Skipped is set (with OK) when nothing was checked because the policy or the
	// options leave the member open; Detail then says what the evidence holds.
	Skipped bool
	// Detail explains the result for a human reviewer.
	Detail string
}

// String renders c as one report line: "ok   ", "skip " or "FAIL " and "name: detail".
func (c Check) String() string {
	status := "ok  "
	switch {
	case !c.OK:
		status = "FAIL"
	case c.Skipped:
		status = "skip"
	}
	return status + " " + c.Name + ": " + c.Detail
}

// Verdict returns the check's verdict as the JSON report spells it: "ok", "skip" or
// "fail".
func (c Check) Verdict() string {
	switch {
	case !c.OK:
		return "fail"
	case c.Skipped:
		return "skip"
	}
	return "ok"
}

// MarshalJSON encodes c as a check of the JSON report: {"name", "verdict", "detail"}.
func (c Check) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name    string `json:"name"`
		Verdict string `json:"verdict"`
		Detail  string `json:"detail"`
	}{c.Name, c.Verdict(), c.Detail})
}

// Report is the result of VerifyEvidence: its checks, in the order they ran.
type Report struct {
	Checks []Check
}

// ReportFormat names the JSON encoding of a Report; it changes only with the format.
const ReportFormat = "cocoon-verify-report/v1"

// MarshalJSON encodes r as the JSON report that `cocoon verify --json` prints and the
// reviewer's page reads:
//
//	{"format": "cocoon-verify-report/v1", "ok": true,
//	 "checks": [{"name": "quote signature chain", "verdict": "ok", "detail": "..."}, ...]}
//
// "ok" is Report.OK; checks are in the order they ran, each with its verdict ("ok",
// "skip" or "fail") and the detail a reviewer reads.
func (r *Report) MarshalJSON() ([]byte, error) {
	checks := r.Checks
	if checks == nil {
		checks = []Check{}
	}
	return json.Marshal(struct {
		Format string  `json:"format"`
		OK     bool    `json:"ok"`
		Checks []Check `json:"checks"`
	}{ReportFormat, r.OK(), checks})
}

// OK reports whether no check failed.
func (r *Report) OK() bool {
	return !slices.ContainsFunc(r.Checks, func(c Check) bool { return !c.OK })
}

// String renders the report, one line per check.
func (r *Report) String() string {
	var b strings.Builder
	for _, c := range r.Checks {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (r *Report) pass(name, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: fmt.Sprintf(format, args...)})
}

func (r *Report) skip(name, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Skipped: true, Detail: fmt.Sprintf(format, args...)})
}

func (r *Report) fail(name, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, Detail: fmt.Sprintf(format, args...)})
}

// EvidenceOptions are what the client knows besides the policy.
type EvidenceOptions struct {
	// SimRoot, when set, is trusted as the root of simulated evidence in addition to
	// the policy's trust_sim_root. Nil and an empty trust_sim_root refuse sim evidence.
	SimRoot *x509.Certificate
	// PipelineID, when set, is the pipeline the client asked evidence for: the
	// evidence must then be pipeline evidence of exactly that id. Empty means boot
	// evidence.
	PipelineID string
	// Nonce is the fresh nonce the client sent with a pipeline evidence request. It is
	// required with PipelineID; a quote over any other nonce is a replay.
	Nonce []byte
	// ExpectModules are module hashes ("sha256:<hex>") the pipeline's manifest must
	// list.
	ExpectModules []string
	// HostKey, when set, is the host key of boot evidence already verified: pipeline
	// evidence must come from the same host key.
	HostKey ed25519.PublicKey
	// Now is the time certificates and collateral must be valid at; zero means
	// time.Now().
	Now time.Time
	// Collateral is Intel's collateral the TCB status is evaluated with (see
	// LoadCollateral); nil leaves the status unevaluated, which only a policy whose
	// min_tcb_status is "any" accepts.
	Collateral CollateralSource
}

func (o *EvidenceOptions) check() error {
	if o.PipelineID == "" {
		if o.Nonce != nil || o.ExpectModules != nil {
			return errors.New("verify: a nonce or expected modules need a pipeline id")
		}
		return nil
	}
	if _, err := decodeHex(o.PipelineID, 32); err != nil {
		return fmt.Errorf("verify: pipeline id %q: want 64 lowercase hex digits", o.PipelineID)
	}
	if len(o.Nonce) < MinNonceBytes || len(o.Nonce) > MaxNonceBytes {
		return fmt.Errorf("verify: nonce of %d bytes, want %d to %d", len(o.Nonce), MinNonceBytes, MaxNonceBytes)
	}
	for _, m := range o.ExpectModules {
		if err := checkSHA256Identity(m); err != nil {
			return fmt.Errorf("verify: expected module %v", err)
		}
	}
	return nil
}

// VerifyEvidence checks evidence against a policy and the client's options and returns
// the report of every check: the quote's signature chain (Intel's root; a simulator
// root only when trusted by the policy or opts), the evidence mode, the TCB status,
// MRTD and RTMR0-2 against the policy, the event log's replay against RTMR3 with
// nothing after the seal, the host binary, ABI version, model, settlement key and its
// origin, and sealing source the log measures, and the REPORTDATA binding. Boot evidence binds the host key, the TLS key and the
// log; pipeline evidence binds opts.Nonce, the manifest hash and the host key, and its
// manifest must hash to opts.PipelineID and list opts.ExpectModules. When the quote
// does not verify the remaining checks are not run, since nothing in it can be trusted.
//
// The evidence is trustworthy only when the report is OK. The error is for a caller's
// mistake (an invalid policy or options, an unreadable trust_sim_root), never for bad
// evidence. Cost: one VerifyQuote, about a millisecond.
func VerifyEvidence(ev Evidence, p Policy, opts EvidenceOptions) (*Report, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(IntelRoot())
	simTrusted := opts.SimRoot != nil
	if simTrusted {
		roots.AddCert(opts.SimRoot)
	}
	if policyRoot, err := p.SimRoot(); err != nil {
		return nil, err
	} else if policyRoot != nil {
		roots.AddCert(policyRoot)
		simTrusted = true
	}

	r := &Report{}
	pipeline := opts.PipelineID != ""
	checkKind(r, ev, pipeline)
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots, Now: opts.Now, Collateral: opts.Collateral})
	if err != nil {
		r.fail("quote signature chain", "%v", err)
	} else if q.Simulated {
		r.pass("quote signature chain", "signed by the quote's attestation key, vouched for by a PCK chain to the trusted simulator root (NOT Intel: simulated evidence proves nothing about hardware)")
	} else {
		r.pass("quote signature chain", "signed by the quote's attestation key, vouched for by a PCK chain to Intel's SGX Root CA")
	}
	checkMode(r, ev.Mode, q, simTrusted)
	if q == nil {
		r.fail("remaining checks", "not run: nothing in a quote that does not verify can be trusted")
		return r, nil
	}
	checkTCB(r, q, p.MinTCBStatus, opts.Collateral != nil)
	for i, m := range []struct {
		name    string
		allowed []string
		value   [48]byte
	}{{"MRTD", p.MRTD, q.MRTD}, {"RTMR0", p.RTMR0, q.RTMRs[0]}, {"RTMR1", p.RTMR1, q.RTMRs[1]}, {"RTMR2", p.RTMR2, q.RTMRs[2]}} {
		what := [...]string{"TD firmware", "firmware configuration", "kernel and initrd", "kernel command line"}[i]
		checkAllowed(r, m.name, what, hex.EncodeToString(m.value[:]), m.allowed)
	}
	events := checkLog(r, ev.EventLog, q.RTMRs[3])
	checkMeasuredEvents(r, events, p)
	if pipeline {
		checkPipeline(r, ev, q, opts)
	} else {
		checkBootBinding(r, ev, q, events)
	}
	if opts.HostKey != nil {
		if bytes.Equal(ev.HostKey, opts.HostKey) {
			r.pass("host key", "the same key as the verified boot evidence")
		} else {
			r.fail("host key", "%x differs from the key %x of the verified boot evidence: another host, or another process, answered", ev.HostKey, []byte(opts.HostKey))
		}
	}
	return r, nil
}

// checkKind checks that the evidence is of the kind asked for, so that boot evidence is
// never taken for pipeline evidence or the other way round.
func checkKind(r *Report, ev Evidence, pipeline bool) {
	hasPipeline := ev.PipelineID != "" || ev.Manifest != nil || ev.Nonce != nil
	switch {
	case pipeline && !hasPipeline:
		r.fail("evidence kind", "pipeline evidence was asked for, the host answered without a pipeline id, manifest or nonce")
	case !pipeline && hasPipeline:
		r.fail("evidence kind", "boot evidence was asked for, the host answered with pipeline fields")
	case pipeline:
		r.pass("evidence kind", "pipeline evidence")
	default:
		r.pass("evidence kind", "boot evidence")
	}
}

func checkMode(r *Report, mode string, q *Quote, simTrusted bool) {
	switch {
	case mode != ModeTDX && mode != ModeSim:
		r.fail("evidence mode", "%q is neither %q nor %q", mode, ModeTDX, ModeSim)
	case mode == ModeSim && !simTrusted:
		r.fail("evidence mode", "simulated evidence, refused: a locally generated chain, not Intel's, vouches for it; trust its root explicitly (--trust-sim-root) only to test")
	case q == nil:
		r.pass("evidence mode", "%s (the quote decides)", mode)
	case q.Simulated != (mode == ModeSim):
		r.fail("evidence mode", "the host says %q but the quote's chain says otherwise (simulated: %t)", mode, q.Simulated)
	case q.Simulated:
		r.pass("evidence mode", "sim, trusted explicitly: for testing only")
	default:
		r.pass("evidence mode", "tdx")
	}
}

// checkTCB checks the quote's TCB status against the policy's minimum. Collateral that
// does not verify fails whatever the policy: it is forged, stale or not this
// platform's, and a client that gave it expected it to be checked.
func checkTCB(r *Report, q *Quote, min string, haveCollateral bool) {
	const name = "TCB status"
	anyOK := min == "" || min == TCBAny
	switch {
	case q.Simulated && anyOK:
		r.skip(name, "not evaluated: simulated evidence has no Intel collateral; the policy allows any status")
	case q.Simulated:
		r.fail(name, "simulated evidence has no Intel collateral, and the policy requires %s or better", min)
	case errors.Is(q.TCBErr, ErrCollateral):
		r.fail(name, "the collateral does not establish it: %v", q.TCBErr)
	case q.TCBErr != nil && anyOK:
		r.skip(name, "unknown: %v; the policy allows any status", q.TCBErr)
	case q.TCBErr != nil:
		r.fail(name, "unknown (%v), and the policy requires %s or better", q.TCBErr, min)
	case !haveCollateral && anyOK:
		r.skip(name, "not evaluated: no Intel collateral was given (--collateral); the policy allows any status")
	case !haveCollateral:
		r.fail(name, "not evaluated: the policy requires %s or better, which needs Intel's collateral (--collateral)", min)
	case anyOK:
		r.pass(name, "%s per Intel's TCB info; the policy allows any status", q.TCBStatus)
	case tcbAtLeast(q.TCBStatus, min):
		r.pass(name, "%s per Intel's TCB info, at least the %s the policy requires", q.TCBStatus, min)
	default:
		r.fail(name, "%s per Intel's TCB info, below the %s the policy requires: the platform's firmware or microcode lacks security fixes", q.TCBStatus, min)
	}
}

// checkAllowed adds the check of a measured value against the values a policy allows;
// an empty list allows any value and the check says so.
func checkAllowed(r *Report, name, what, got string, allowed []string) {
	switch {
	case len(allowed) == 0:
		r.skip(name, "any: the policy does not pin the %s; measured %s", what, got)
	case slices.Contains(allowed, got):
		r.pass(name, "%s is allowed by the policy", got)
	default:
		r.fail(name, "%s is not among the %d values the policy allows: the %s is not one the policy knows", got, len(allowed), what)
	}
}

// checkLog parses and replays the event log against RTMR3 and returns its events, or
// nil when it does not verify.
func checkLog(r *Report, raw json.RawMessage, rtmr3 [48]byte) []Event {
	events, err := ParseEventLog(raw)
	if err != nil {
		r.fail("event log", "unreadable: %v", err)
		return nil
	}
	if err := VerifyLog(events, rtmr3); err != nil {
		r.fail("event log", "%v", err)
		return nil
	}
	r.pass("event log", "%d events, sealed, nothing after the seal; the replay equals the quote's RTMR3", len(events))
	return events
}

// checkMeasuredEvents checks what the event log measures against the policy.
func checkMeasuredEvents(r *Report, events []Event, p Policy) {
	text := func(d []byte) string { return string(d) }
	abiAllowed := []string(nil)
	if p.ABIVersion != 0 {
		abiAllowed = []string{strconv.FormatUint(uint64(p.ABIVersion), 10)}
	}
	for _, c := range []struct {
		name    string
		typ     EventType
		allowed []string
		value   func(data []byte) string
	}{
		{"host binary", EventHostBinary, p.HostBinary, func(d []byte) string { return "sha256:" + hex.EncodeToString(d) }},
		{"ABI version", EventABIVersion, abiAllowed, func(d []byte) string { return strconv.FormatUint(uint64(binary.BigEndian.Uint32(d)), 10) }},
		{"model", EventModel, p.Models, text},
		{"settlement key", EventSettlementKey, p.SettlementKeys, hex.EncodeToString},
		{"settlement key origin", EventSettlementKeyOrigin, p.SettlementKeyOrigins, text},
		{"sealing", EventSealing, p.Sealing, text},
	} {
		if events == nil {
			r.fail(c.name, "not checked: the event log does not verify")
			continue
		}
		i := slices.IndexFunc(events, func(e Event) bool { return e.Type == c.typ })
		if i < 0 {
			if len(c.allowed) == 0 {
				r.skip(c.name, "any: the policy does not pin it, and the event log does not measure it")
			} else {
				r.fail(c.name, "the event log does not measure it, and the policy requires one of %s", strings.Join(c.allowed, ", "))
			}
			continue
		}
		checkAllowed(r, c.name, string(c.typ)+" measurement", c.value(events[i].Data), c.allowed)
	}
}

func checkBootBinding(r *Report, ev Evidence, q *Quote, events []Event) {
	const name = "REPORTDATA binding"
	if events == nil {
		r.fail(name, "not checked: the event log does not verify")
		return
	}
	digest, _ := Replay(events) // checkLog verified them.
	want, err := BootReportData(ev.HostKey, ev.TLSKey, digest)
	switch {
	case err != nil:
		r.fail(name, "the evidence's keys cannot be bound: %v", err)
	case want != q.ReportData:
		r.fail(name, "the quote's REPORTDATA does not bind this host key, TLS key and event log: the keys or the log were swapped, or the quote was taken for other data")
	default:
		r.pass(name, "the quote binds host key %x, the TLS key and the event log", ev.HostKey)
	}
}

func checkPipeline(r *Report, ev Evidence, q *Quote, opts EvidenceOptions) {
	manifestHash := ManifestHash(ev.Manifest)
	switch got := hex.EncodeToString(manifestHash[:]); {
	case ev.PipelineID != opts.PipelineID:
		r.fail("pipeline id", "the evidence is for pipeline %q, not %s as asked", ev.PipelineID, opts.PipelineID)
	case got != opts.PipelineID:
		r.fail("pipeline id", "the manifest served hashes to %s, not to the pipeline id %s: it is not this pipeline's manifest", got, opts.PipelineID)
	default:
		r.pass("pipeline id", "%s is the sha256 of the manifest", got)
	}
	if bytes.Equal(ev.Nonce, opts.Nonce) {
		r.pass("nonce", "the evidence answers the fresh nonce this client sent")
	} else {
		r.fail("nonce", "the evidence answers nonce %x, not the fresh nonce %x this client sent: a replayed or substituted quote", ev.Nonce, opts.Nonce)
	}
	// The client's own nonce, not the one the evidence echoes: a quote binds this
	// request only if it binds the nonce the client chose.
	want, err := PipelineReportData(opts.Nonce, manifestHash, ev.HostKey)
	switch {
	case err != nil:
		r.fail("REPORTDATA binding", "the evidence's host key cannot be bound: %v", err)
	case want != q.ReportData:
		r.fail("REPORTDATA binding", "the quote's REPORTDATA does not bind this client's nonce, this manifest and this host key: the quote was taken for other data (an old request, another pipeline or another key)")
	default:
		r.pass("REPORTDATA binding", "the quote binds the client's nonce, the manifest hash and host key %x", ev.HostKey)
	}
	modules, err := manifestModules(ev.Manifest)
	if err != nil {
		r.fail("manifest", "unreadable: %v", err)
		return
	}
	if len(modules) == 0 {
		r.pass("manifest", "no modules: prompts reach the model unchanged")
	} else {
		r.pass("manifest", "modules %s", strings.Join(modules, ", "))
	}
	if len(opts.ExpectModules) == 0 {
		r.skip("expected modules", "none given (--expect-module): the modules above were not compared with any the client expects")
		return
	}
	var missing []string
	for _, m := range opts.ExpectModules {
		if !slices.Contains(modules, m) {
			missing = append(missing, m)
		}
	}
	if missing != nil {
		r.fail("expected modules", "the pipeline does not run %s", strings.Join(missing, ", "))
	} else {
		r.pass("expected modules", "the pipeline runs all %d", len(opts.ExpectModules))
	}
}

// manifestModules returns the module hashes of a canonical manifest, pre then post, in
// order, each once. It decodes strictly the members Manifest.Canonical writes in the
// host package, which attest does not import.
func manifestModules(b []byte) ([]string, error) {
	type module struct {
		Module string          `json:"module"`
		Config json.RawMessage `json:"config"`
		Limits json.RawMessage `json:"limits"`
	}
	var m struct {
		ABIVersion int      `json:"abi_version"`
		Model      string   `json:"model"`
		Pre        []module `json:"pre"`
		Post       []module `json:"post"`
	}
	if err := decodeStrict(b, MaxEvidenceBytes, &m, errManifestEncoding, "manifest"); err != nil {
		return nil, err
	}
	var out []string
	for _, mm := range append(m.Pre, m.Post...) {
		if err := checkSHA256Identity(mm.Module); err != nil {
			return nil, fmt.Errorf("module %v", err)
		}
		if !slices.Contains(out, mm.Module) {
			out = append(out, mm.Module)
		}
	}
	return out, nil
}
