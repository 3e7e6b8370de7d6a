package attest

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/attest/nvidia"
	"github.com/cocoonhost/cocoon/host/manifest"
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

// EvidenceOptions are what the client knows besides the policy.
type EvidenceOptions struct {
	// SimRoot, when set, is trusted as the root of simulated evidence in addition to
	// the policy's trust_sim_root. Nil and an empty trust_sim_root refuse sim evidence.
	SimRoot *x509.Certificate
	// PipelineID, when set, is the pipeline the client asked evidence for: the
	// evidence must then be pipeline evidence of exactly that id. Empty means boot
	// evidence.
	PipelineID string
	// Nonce is the fresh nonce the client sent with its request: required with
	// PipelineID, optional for boot evidence (GET /v1/attestation?nonce=), which is
	// fresh only with one. A quote over any other nonce is a replay.
	Nonce []byte
	// Archived says that Nonce was read back with the evidence (cocoon verify
	// --evidence) rather than chosen by this caller for this verification: the quote
	// then shows what the host ran when the evidence was fetched, and the report is not
	// fresh.
	Archived bool
	// ExpectModules are module hashes ("sha256:<hex>") the pipeline's manifest must
	// list. They pin code, not behaviour: a module's config can make it do nothing.
	ExpectModules []string
	// ExpectManifest, when set, is the canonical manifest (the bytes the pipeline id is
	// the sha256 of: host.Manifest.Canonical) the pipeline must have, byte for byte:
	// the model, the modules in order, their configs and their limits.
	ExpectManifest []byte
	// HostKey, when set, is the host key of boot evidence already verified: pipeline
	// evidence must come from the same host key.
	HostKey ed25519.PublicKey
	// Strict adds a last check, "strict", that fails unless every other check passed
	// outright: no skip line (a measurement the policy leaves open, an expectation not
	// given), no warning, and fresh evidence. Automation should set it: without it an
	// empty policy passes any genuine host.
	Strict bool
	// Now is the time certificates and collateral must be valid at; zero means
	// time.Now().
	Now time.Time
	// Collateral is Intel's collateral the TCB status is evaluated with (see
	// LoadCollateral); nil leaves the status unevaluated, which only a policy whose
	// min_tcb_status is "any" accepts. It also serves the GPUs' RIMs the policy does
	// not give (gpu_driver_rim, gpu_vbios_rim), from NVIDIA's RIM service
	// (nvidia.RIMServiceURL); nil leaves those RIMs missing, which fails their lines.
	Collateral CollateralSource
	// SimGPURoots, when set, are a simulated GPU's roots to trust instead of the
	// policy's trust_sim_gpu_root. Nil and an empty trust_sim_gpu_root refuse
	// simulated GPUs.
	SimGPURoots *SimGPURoots
	// GPUCache, when set, remembers across calls the GPU device chains and RIMs that
	// verified (nvidia.Cache), so that a GPU seen before, under the same roots (NVIDIA's,
	// or the same SimGPURoots), costs its report's one P-384 verification instead of
	// five to ten. Share one among the verifications of one client; nil verifies
	// everything every time.
	GPUCache *nvidia.Cache
	// GPURIMs, when set, are the policy's GPU RIMs verified when the verifier loaded
	// the policy (LoadGPURIMs, with the same policy and roots), used instead of
	// verifying gpu_driver_rim and gpu_vbios_rim again.
	GPURIMs *GPURIMs
}

func (o *EvidenceOptions) check() error {
	if o.Nonce != nil && checkNonce(o.Nonce) != nil {
		return fmt.Errorf("verify: nonce of %d bytes, want %d to %d", len(o.Nonce), MinNonceBytes, MaxNonceBytes)
	}
	if o.PipelineID == "" {
		if o.ExpectModules != nil || o.ExpectManifest != nil {
			return errors.New("verify: expected modules or an expected manifest need a pipeline id")
		}
		return nil
	}
	if _, err := decodeHex(o.PipelineID, 32); err != nil {
		return fmt.Errorf("verify: pipeline id %q: want 64 lowercase hex digits", o.PipelineID)
	}
	if o.Nonce == nil {
		return errors.New("verify: pipeline evidence needs the nonce the client sent")
	}
	for _, m := range o.ExpectModules {
		if err := checkSHA256Identity(m); err != nil {
			return fmt.Errorf("verify: expected module %v", err)
		}
	}
	if o.ExpectManifest != nil {
		if _, err := parseManifest(o.ExpectManifest); err != nil {
			return fmt.Errorf("verify: expected manifest: %v", err)
		}
	}
	return nil
}

// VerifyEvidence checks evidence against a policy and the client's options and returns
// the report of every check, in this order: the kind of evidence; the quote's signature
// chain (Intel's root; a simulator root only when trusted by the policy or opts) and
// the evidence mode it implies; the TCB status; MRTD, RTMR0-2, the TD attributes (a
// debug TD always fails), XFAM, MRSEAM, MROWNER, MRCONFIGID and MROWNERCONFIG against
// the policy; the event log's replay against RTMR3, its documented order and
// completeness; each measured event against the policy (host binary, ABI version,
// sandbox policy, backend, model, sealing, settlement key and its origin), and where
// prompts go (a backend outside the TD fails unless the policy names it); a warning
// when the policy trusts what the host measures of itself without pinning the boot
// chain that measured it; then for boot evidence the nonce (without one the report is
// not fresh) and the REPORTDATA binding of the keys, log and nonce; for pipeline
// evidence the pipeline id, the nonce, the binding of nonce, manifest and host key, the
// manifest itself, and the modules or manifest expected; the GPUs (checkGPUs: each
// GPU's report over GPUNonce of the quote's REPORTDATA, step by step, its identity
// against the gpus event, its driver, VBIOS and CC mode against the policy); the host
// key of opts; and with opts.Strict the "strict" check. When the quote does not verify the remaining checks
// are not run, since nothing in it can be trusted.
//
// The evidence is trustworthy only when the report is OK. The error is for a caller's
// mistake (an invalid policy or options, an unreadable trust_sim_root), never for bad
// evidence. Cost: one VerifyQuote, under a millisecond with sim evidence (no
// collateral), and one nvidia.Verify per GPU report.
func VerifyEvidence(ev Evidence, p Policy, opts EvidenceOptions) (*Report, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(intelRoot())
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
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	gpus, err := newGPUVerification(&p, opts, now)
	if err != nil {
		return nil, err
	}

	pipeline := opts.PipelineID != ""
	r := &Report{Strict: opts.Strict, checkedAt: now, evidence: summarize(ev, pipeline)}
	if opts.Strict {
		defer r.checkStrict() // last, whatever returns first
	}
	checkKind(r, ev, pipeline)
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots, Now: now, Collateral: opts.Collateral})
	checkChain(r, q, err, simTrusted)
	checkMode(r, ev.Mode, q, simTrusted)
	if q == nil {
		r.fail("remaining checks", "not run: nothing in a quote that does not verify can be trusted")
		return r, nil
	}
	r.quote = q
	checkTCB(r, q, p.MinTCBStatus, opts.Collateral != nil)
	checkTD(r, q, &p)
	events := checkLog(r, ev.EventLog, q.RTMRs[3])
	checkMeasuredEvents(r, events, &p)
	checkSelfMeasurement(r, &p)
	if pipeline {
		checkPipeline(r, ev, q, opts)
	} else {
		checkBoot(r, ev, q, events, opts)
	}
	checkGPUs(r, ev, q, events, &p, gpus)
	checkE2EKeys(r, ev)
	if opts.HostKey != nil {
		if bytes.Equal(ev.HostKey, opts.HostKey) {
			r.pass("host key", "the same key as the verified boot evidence")
		} else {
			r.fail("host key", "%x differs from the key %x of the verified boot evidence: another host, or another process, answered", ev.HostKey, []byte(opts.HostKey))
		}
	}
	return r, nil
}

// summarize returns what ev claims, for the JSON report.
func summarize(ev Evidence, pipeline bool) *reportEvidence {
	s := &reportEvidence{Kind: kindBoot, Mode: ev.Mode, HostKey: hex.EncodeToString(ev.HostKey),
		TLSKey: hex.EncodeToString(ev.TLSKey), Nonce: hex.EncodeToString(ev.Nonce), PipelineID: ev.PipelineID}
	if pipeline {
		s.Kind = kindPipeline
	}
	return s
}

// checkKind checks that the evidence is of the kind asked for, so that boot evidence is
// never taken for pipeline evidence or the other way round.
func checkKind(r *Report, ev Evidence, pipeline bool) {
	hasPipeline := ev.PipelineID != "" || ev.Manifest != nil
	switch {
	case pipeline && !hasPipeline:
		r.fail("evidence kind", "pipeline evidence was asked for, the host answered without a pipeline id or manifest")
	case !pipeline && hasPipeline:
		r.fail("evidence kind", "boot evidence was asked for, the host answered with pipeline fields")
	case pipeline:
		r.pass("evidence kind", "pipeline evidence")
	case ev.Nonce != nil:
		r.pass("evidence kind", "boot evidence, quoted for a nonce")
	default:
		r.pass("evidence kind", "boot evidence")
	}
}

// checkChain reports VerifyQuote's verdict on the signature chain. Whether the chain
// ends at Intel's root is decided by the root's key, never by its name: a look-alike
// root the client trusted is reported as what it is.
func checkChain(r *Report, q *Quote, err error, simTrusted bool) {
	const name = "quote signature chain"
	switch {
	case errors.Is(err, ErrUntrustedRoot) && simTrusted:
		r.fail(name, "not signed by the given simulator root, nor by Intel's: %v", err)
	case err != nil:
		r.fail(name, "%v", err)
	case q.Simulated:
		r.pass(name, "signed by the quote's attestation key, vouched for by a PCK chain to a root trusted explicitly, %q, which is NOT Intel's SGX Root CA whatever its name says: simulated evidence proves nothing about hardware", q.Root.Subject.String())
	default:
		r.pass(name, "signed by the quote's attestation key, vouched for by a PCK chain to Intel's SGX Root CA")
	}
}

func checkMode(r *Report, mode string, q *Quote, simTrusted bool) {
	const name = "evidence mode"
	switch {
	case mode != ModeTDX && mode != ModeSim:
		r.fail(name, "%q is neither %q nor %q", mode, ModeTDX, ModeSim)
	case mode == ModeSim && !simTrusted:
		r.add("fail", name, mode, "simulated evidence, refused: a locally generated chain, not Intel's, vouches for it; trust its root explicitly (--trust-sim-root) only to test")
	case q == nil:
		r.add("ok", name, mode, "%s (the quote decides)", mode)
	case q.Simulated && mode == ModeTDX:
		r.add("fail", name, mode, "the host says %q but the quote's chain ends at %q, not at Intel's SGX Root CA: a simulator's root or a look-alike", mode, q.Root.Subject.String())
	case q.Simulated != (mode == ModeSim):
		r.add("fail", name, mode, "the host says %q but the quote's chain says otherwise (simulated: %t)", mode, q.Simulated)
	case q.Simulated:
		r.add("ok", name, mode, "sim, trusted explicitly: for testing only")
	default:
		r.add("ok", name, mode, "tdx")
	}
}

// checkTCB checks the quote's TCB status against the policy's minimum. Collateral that
// does not verify fails whatever the policy: it is forged, stale or not this
// platform's, and a client that gave it expected it to be checked. A policy that says
// "any" chose to accept any status, an ok line; one that says nothing leaves it open,
// a skip line.
func checkTCB(r *Report, q *Quote, min string, haveCollateral bool) {
	const name = "TCB status"
	anyOK := min == "" || min == TCBAny
	open := "skip"
	policySays := "the policy does not pin it"
	if min == TCBAny {
		open, policySays = "ok", "the policy accepts any status"
	}
	switch {
	case q.Simulated && anyOK:
		r.add(open, name, "", "not evaluated: simulated evidence has no Intel collateral; %s", policySays)
	case q.Simulated:
		r.fail(name, "simulated evidence has no Intel collateral, and the policy requires %s or better", min)
	case errors.Is(q.TCBErr, ErrCollateral):
		r.fail(name, "the collateral does not establish it: %v", q.TCBErr)
	case q.TCBErr != nil && anyOK:
		r.add(open, name, "", "unknown: %v; %s", q.TCBErr, policySays)
	case q.TCBErr != nil:
		r.fail(name, "unknown (%v), and the policy requires %s or better", q.TCBErr, min)
	case !haveCollateral && anyOK:
		r.add(open, name, "", "not evaluated: no Intel collateral was given (--collateral); %s", policySays)
	case !haveCollateral:
		r.fail(name, "not evaluated: the policy requires %s or better, which needs Intel's collateral (--collateral)", min)
	case anyOK:
		r.add(open, name, q.TCBStatus, "%s per Intel's TCB info; %s", q.TCBStatus, policySays)
	case tcbAtLeast(q.TCBStatus, min):
		r.add("ok", name, q.TCBStatus, "%s per Intel's TCB info, at least the %s the policy requires", q.TCBStatus, min)
	default:
		r.add("fail", name, q.TCBStatus, "%s per Intel's TCB info, below the %s the policy requires: the platform's firmware or microcode lacks security fixes", q.TCBStatus, min)
	}
}

// pinned is a value of verified evidence and the policy member that pins it.
type pinned struct {
	name    string    // the report line's name
	what    string    // what the value is, for the line's detail
	allowed *[]string // the policy member listing the accepted values
	value   string    // as the policy spells it
	shown   string    // as the detail shows it, when not value
}

// tdPins returns the quote's measurements that p pins, in the order of the report.
func tdPins(p *Policy, q *Quote) []pinned {
	h := func(b []byte) string { return hex.EncodeToString(b) }
	return []pinned{
		{name: "MRTD", what: "TD firmware", allowed: &p.MRTD, value: h(q.MRTD[:])},
		{name: "RTMR0", what: "firmware configuration", allowed: &p.RTMR0, value: h(q.RTMRs[0][:])},
		{name: "RTMR1", what: "kernel and initrd", allowed: &p.RTMR1, value: h(q.RTMRs[1][:])},
		{name: "RTMR2", what: "kernel command line", allowed: &p.RTMR2, value: h(q.RTMRs[2][:])},
		{name: "TD attributes", what: "TD attributes", allowed: &p.TDAttributes, value: h(q.TDAttributes[:]),
			shown: h(q.TDAttributes[:]) + " (" + attributeNames(q.TDAttributes) + ")"},
		{name: "XFAM", what: "set of CPU features the TD may use", allowed: &p.XFAM, value: h(q.XFAM[:])},
		{name: "MRSEAM", what: "TDX module", allowed: &p.MRSEAM, value: h(q.MRSEAM[:])},
		{name: "MROWNER", what: "TD owner's identity", allowed: &p.MROwner, value: h(q.MROwner[:])},
		{name: "MRCONFIGID", what: "TD configuration id", allowed: &p.MRConfigID, value: h(q.MRConfigID[:])},
		{name: "MROWNERCONFIG", what: "TD owner's configuration", allowed: &p.MROwnerConfig, value: h(q.MROwnerConfig[:])},
	}
}

// tdAttributeNames names the TD attribute bits (TDX module ABI, TDATTRIBUTES); other
// set bits are shown by number.
var tdAttributeNames = map[int]string{0: "DEBUG", 28: "SEPT_VE_DISABLE", 29: "MIGRATABLE", 30: "PKS", 31: "KL", 63: "PERFMON"}

// attributeNames lists the bits set in TD attributes, by name.
func attributeNames(a [8]byte) string {
	v := binary.LittleEndian.Uint64(a[:])
	var names []string
	for bit := range 64 {
		if v&(1<<bit) == 0 {
			continue
		}
		if n, ok := tdAttributeNames[bit]; ok {
			names = append(names, n)
		} else {
			names = append(names, "bit "+strconv.Itoa(bit))
		}
	}
	if names == nil {
		return "none set"
	}
	return strings.Join(names, ", ")
}

// checkTD checks the quote's measurements against the policy. A debug TD fails
// whatever the policy says: its host reads and writes its memory, so no other check
// would mean anything.
func checkTD(r *Report, q *Quote, p *Policy) {
	for _, m := range tdPins(p, q) {
		if m.allowed == &p.TDAttributes && q.Debug() {
			r.add("fail", m.name, m.value, "%s: a debug TD, refused whatever the policy says: the machine's owner can read and write its memory, so no other check means anything", m.shown)
			continue
		}
		checkPinned(r, m)
	}
}

// checkPinned adds the check of a measured value against the values a policy allows;
// an empty list allows any value and the check says so (a skip line).
func checkPinned(r *Report, m pinned) {
	shown := cmp.Or(m.shown, m.value)
	switch {
	case len(*m.allowed) == 0:
		r.add("skip", m.name, m.value, "any: the policy does not pin the %s; measured %s", m.what, shown)
	case slices.Contains(*m.allowed, m.value):
		r.add("ok", m.name, m.value, "%s is allowed by the policy", shown)
	default:
		r.add("fail", m.name, m.value, "%s is not among the %d values the policy allows: the %s is not one the policy knows", shown, len(*m.allowed), m.what)
	}
}

// checkLog parses and replays the event log against RTMR3 and returns its events, or
// nil when it does not verify. The report then lists every event, in order.
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
	c := r.add("ok", "event log", hex.EncodeToString(rtmr3[:]), "%d events in the documented order, sealed, nothing after the seal; the replay equals the quote's RTMR3", len(events))
	for i, e := range events {
		c.more = append(c.more, fmt.Sprintf("%d. %s", i+1, e))
	}
	r.events = events
	return events
}

// eventPin is an event a policy member pins.
type eventPin struct {
	name    string
	typ     EventType
	allowed *[]string
	// absent is what an absent event means when the policy does not pin it: "" for
	// unknown (a skip line), else the detail of an ok line.
	absent string
}

// eventPins returns the events a policy pins, in the order of the log. The ABI
// version, a number in the policy, is pinned through abiVersion.
func eventPins(p *Policy, abiVersion *[]string) []eventPin {
	return []eventPin{
		{"host binary", EventHostBinary, &p.HostBinary, ""},
		{"ABI version", EventABIVersion, abiVersion, ""},
		{"sandbox policy", EventSandboxPolicy, &p.SandboxPolicy, ""},
		{"backend", EventBackend, &p.Backends, ""},
		{"model", EventModel, &p.Models, ""},
		{"sealing", EventSealing, &p.Sealing, ""},
		{"settlement key", EventSettlementKey, &p.SettlementKeys, "none: the host does not bill (it measures no settlement key)"},
		{"settlement key origin", EventSettlementKeyOrigin, &p.SettlementKeyOrigins, "none: the host measures no settlement key"},
	}
}

// checkMeasuredEvents checks what the event log measures against the policy, and where
// the backend sends prompts.
func checkMeasuredEvents(r *Report, events []Event, p *Policy) {
	var abiAllowed []string
	if p.ABIVersion != 0 {
		abiAllowed = []string{strconv.FormatUint(uint64(p.ABIVersion), 10)}
	}
	for _, c := range eventPins(p, &abiAllowed) {
		if events == nil {
			r.fail(c.name, "not checked: the event log does not verify")
			continue
		}
		i := slices.IndexFunc(events, func(e Event) bool { return e.Type == c.typ })
		switch {
		case i < 0 && len(*c.allowed) > 0:
			r.fail(c.name, "the event log does not measure it, and the policy requires one of %s", strings.Join(*c.allowed, ", "))
		case i < 0 && c.absent != "":
			r.pass(c.name, "%s", c.absent)
		case i < 0:
			r.skip(c.name, "any: the policy does not pin it, and the event log does not measure it")
		default:
			m := pinned{name: c.name, what: string(c.typ) + " measurement", allowed: c.allowed, value: events[i].Value()}
			if isText(c.typ) {
				m.shown = strconv.Quote(m.value)
			}
			checkPinned(r, m)
			if c.typ == EventBackend {
				checkPromptDestination(r, m.value, p.Backends)
			}
		}
	}
}

// isText reports whether events of type t carry text.
func isText(t EventType) bool {
	return t == EventBackend || t == EventModel || t == EventSealing || t == EventSettlementKeyOrigin
}

// checkPromptDestination checks where the backend sends prompts: a backend outside the
// TD sees every prompt and answer in plaintext, so it fails unless the policy names it.
func checkPromptDestination(r *Report, backend string, allowed []string) {
	const name = "where prompts go"
	where, inside := backendLocation(backend)
	switch {
	case inside:
		r.add("ok", name, backend, "they stay inside the TD: %s", where)
	case slices.Contains(allowed, backend):
		r.add("ok", name, backend, "they LEAVE the TD, to %s, which the policy accepts (backends names it)", where)
	default:
		r.add("fail", name, backend, "they leave the TD, to %s: whoever runs it reads every prompt and answer; refused unless the policy names this backend in backends", where)
	}
}

// backendLocation says where a backend, as the backend event measures it, sends
// prompts and whether that is inside the TD: "embedded" (the host process), "plugin"
// (a child process of the host), or "openai " and a URL whose host is loopback
// (localhost, 127.0.0.0/8, ::1: another process of this TD, as far as the TD image
// RTMR1-2 measure says what runs there) or whose scheme is unix (a unix socket of the
// TD). Anything else is outside, or not known to be inside, which is the same to a
// client.
func backendLocation(backend string) (where string, inside bool) {
	switch backend {
	case "embedded":
		return "the embedded engine, in the host process", true
	case "plugin":
		return "the embedded engine, in a child process of the host", true
	}
	target, ok := strings.CutPrefix(backend, "openai ")
	if !ok {
		return fmt.Sprintf("a backend this verifier does not know (%q), so not known to be inside the TD", backend), false
	}
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Sprintf("%q, which is not a URL", target), false
	}
	switch u.Scheme {
	case "unix":
		if u.Host == "" && u.Path != "" {
			return fmt.Sprintf("an OpenAI-compatible server on the unix socket %s, inside the TD", u.Path), true
		}
	case "http", "https":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); strings.EqualFold(host, "localhost") || err == nil && ip.Unmap().IsLoopback() {
			return fmt.Sprintf("an OpenAI-compatible server at %s, on the TD's loopback interface", target), true
		}
		return fmt.Sprintf("an OpenAI-compatible server at %s, over the network: outside the TD", target), false
	}
	return fmt.Sprintf("%q, not a location known to be inside the TD", target), false
}

// checkSelfMeasurement warns when a policy pins what the host measures of itself (its
// binary, its model) but not the boot chain that vouches for the measuring code.
func checkSelfMeasurement(r *Report, p *Policy) {
	var self, open []string
	for _, m := range []struct {
		name   string
		values []string
	}{{"host_binary", p.HostBinary}, {"models", p.Models}} {
		if len(m.values) > 0 {
			self = append(self, m.name)
		}
	}
	if self == nil {
		return
	}
	for _, m := range []struct {
		name   string
		values []string
	}{{"mrtd", p.MRTD}, {"rtmr1", p.RTMR1}, {"rtmr2", p.RTMR2}} {
		if len(m.values) == 0 {
			open = append(open, m.name)
		}
	}
	const name = "self-measurement"
	if open == nil {
		r.pass(name, "the policy pins %s, which the host measures of itself, and mrtd, rtmr1 and rtmr2, the firmware, kernel, initrd and command line that vouch for the code that measured it", strings.Join(self, " and "))
		return
	}
	r.add("warn", name, "", "the policy pins %s, which the host measures of itself into RTMR3, but not %s: only MRTD and RTMR1-2 (the firmware, the kernel and initrd, the kernel command line) vouch for the code that took that measurement, and a host whose boot is not pinned could have measured anything", strings.Join(self, " and "), strings.Join(open, ", "))
}

// checkFreshness adds the "nonce" check and returns the nonce the quote must bind: the
// client's own when it sent one (a quote binds this request only if it binds the nonce
// the client chose), else the one the evidence echoes, else nil.
func checkFreshness(r *Report, evNonce []byte, opts EvidenceOptions) []byte {
	const name = "nonce"
	value := hex.EncodeToString(evNonce)
	switch {
	case opts.Nonce == nil && evNonce == nil:
		r.add("warn", name, "", "none, so not fresh: boot evidence without a nonce is the quote the host took when it started, and a stopped or copied host serves the same bytes; it shows what booted, not that this host runs now (ask with a nonce: GET /v1/attestation?nonce=<hex>)")
		return nil
	case opts.Nonce == nil:
		r.add("warn", name, value, "the evidence answers nonce %x, which this client did not send, so not fresh: it shows the host ran when someone asked, not now", evNonce)
		return evNonce
	case evNonce == nil:
		r.add("fail", name, "", "the evidence answers no nonce, not the fresh nonce %x this client sent: a replayed quote, or a host that ignores nonces", opts.Nonce)
	case !bytes.Equal(evNonce, opts.Nonce):
		r.add("fail", name, value, "the evidence answers nonce %x, not the fresh nonce %x this client sent: a replayed or substituted quote", evNonce, opts.Nonce)
	case opts.Archived:
		r.add("warn", name, value, "the evidence answers nonce %x, saved with it, so not fresh: it shows what the host ran when the evidence was fetched, not now", evNonce)
	default:
		r.Fresh = true
		r.add("ok", name, value, "the evidence answers the fresh nonce this client sent")
	}
	return opts.Nonce
}

// checkBoot checks the freshness of boot evidence and its REPORTDATA binding.
func checkBoot(r *Report, ev Evidence, q *Quote, events []Event, opts EvidenceOptions) {
	nonce := checkFreshness(r, ev.Nonce, opts)
	const name = "REPORTDATA binding"
	if events == nil {
		r.fail(name, "not checked: the event log does not verify")
		return
	}
	digest, _ := Replay(events) // checkLog verified them.
	want, err := BootReportData(ev.HostKey, ev.TLSKey, digest)
	bound := "host key, TLS key and event log"
	if nonce != nil {
		want, err = FreshBootReportData(nonce, ev.HostKey, ev.TLSKey, digest)
		bound = "host key, TLS key, event log and nonce"
	}
	switch {
	case err != nil:
		r.fail(name, "the evidence's keys cannot be bound: %v", err)
	case want != q.ReportData:
		r.fail(name, "the quote's REPORTDATA does not bind this %s: the keys or the log were swapped, or the quote was taken for other data (another nonce, or none)", bound)
	default:
		r.add("ok", name, hex.EncodeToString(ev.HostKey), "the quote binds this %s (host key %x)", bound, ev.HostKey)
	}
}

func checkPipeline(r *Report, ev Evidence, q *Quote, opts EvidenceOptions) {
	manifestHash := ManifestHash(ev.Manifest)
	got := hex.EncodeToString(manifestHash[:])
	switch {
	case ev.PipelineID != opts.PipelineID:
		r.fail("pipeline id", "the evidence is for pipeline %q, not %s as asked", ev.PipelineID, opts.PipelineID)
	case got != opts.PipelineID:
		r.fail("pipeline id", "the manifest served hashes to %s, not to the pipeline id %s: it is not this pipeline's manifest", got, opts.PipelineID)
	default:
		r.add("ok", "pipeline id", got, "%s is the sha256 of the manifest", got)
	}
	nonce := checkFreshness(r, ev.Nonce, opts)
	want, err := PipelineReportData(nonce, manifestHash, ev.HostKey)
	switch {
	case err != nil:
		r.fail("REPORTDATA binding", "the evidence's host key cannot be bound: %v", err)
	case want != q.ReportData:
		r.fail("REPORTDATA binding", "the quote's REPORTDATA does not bind this client's nonce, this manifest and this host key: the quote was taken for other data (an old request, another pipeline or another key)")
	default:
		r.pass("REPORTDATA binding", "the quote binds the client's nonce, the manifest hash and host key %x", ev.HostKey)
	}
	m, err := parseManifest(ev.Manifest)
	if err != nil {
		r.fail("manifest", "unreadable: %v", err)
		return
	}
	if got == opts.PipelineID {
		r.manifest = ev.Manifest
	}
	modules := m.Modules()
	summary := "no modules: prompts reach the model unchanged"
	if len(modules) > 0 {
		summary = "modules " + strings.Join(modules, ", ")
	}
	c := r.add("ok", "manifest", "", "%s; model %q, ABI version %d", summary, m.Model, m.ABIVersion)
	c.more = manifestLines(m)
	checkExpected(r, m, ev.Manifest, opts)
}

// checkExpected compares the pipeline's manifest with the modules and the manifest the
// client expects.
func checkExpected(r *Report, m *manifest.Manifest, raw []byte, opts EvidenceOptions) {
	switch {
	case len(opts.ExpectModules) > 0:
		var missing []string
		for _, want := range opts.ExpectModules {
			if !slices.Contains(m.Modules(), want) {
				missing = append(missing, want)
			}
		}
		if missing != nil {
			r.fail("expected modules", "the pipeline does not run %s", strings.Join(missing, ", "))
		} else {
			r.pass("expected modules", "the pipeline runs all %d", len(opts.ExpectModules))
		}
	case opts.ExpectManifest == nil:
		r.skip("expected modules", "none given (--expect-module, --expect-manifest): the modules above were not compared with any the client expects")
	}
	if opts.ExpectManifest == nil {
		if len(opts.ExpectModules) > 0 {
			r.skip("expected manifest", "none given (--expect-manifest): the modules' code was checked, not their configs and limits, which decide what that code does")
		}
		return
	}
	want, _ := parseManifest(opts.ExpectManifest) // opts.check parsed it
	if bytes.Equal(raw, opts.ExpectManifest) {
		r.pass("expected manifest", "the pipeline is exactly the one expected: the same model, modules in the same order, with the same configs and limits")
		return
	}
	r.fail("expected manifest", "the pipeline is not the one expected: %s", strings.Join(manifestDiff(m, want), "; "))
}

// parseManifest decodes a pipeline's manifest as evidence carries it, with the parser
// a host checks an upload with (manifest.Parse: strict, every bound of SPEC.md), so
// that a verifier takes no manifest a host would refuse. The evidence's bytes are what
// the pipeline id covers; Canonical gives them back for a manifest a host made.
func parseManifest(b []byte) (*manifest.Manifest, error) {
	m, err := manifest.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errManifestEncoding, err)
	}
	return m, nil
}

// manifestStage is one stage of a manifest, named as SPEC.md names it.
type manifestStage struct {
	name    string
	modules []manifest.Module
}

func manifestStages(m *manifest.Manifest) []manifestStage {
	return []manifestStage{{"pre", m.Pre}, {"post", m.Post}}
}

// canonicalModule renders a module's config and limits as a canonical manifest holds
// them (manifest.Manifest.Canonical), so that the report shows the bytes the pipeline
// id covers: the config's compact JSON or null, the limits members as given, in their
// order (a host fills in every default; a manifest that does not says so here).
func canonicalModule(mm manifest.Module) (config, limits string) {
	config = "null"
	if mm.Config != nil {
		config = string(mm.Config)
	}
	b, _ := json.Marshal(mm.Limits) // plain integers: cannot fail
	return config, string(b)
}

// lines renders the manifest's modules for the report, one line each, pre then post.
func manifestLines(m *manifest.Manifest) []string {
	var out []string
	for _, st := range manifestStages(m) {
		for i, mm := range st.modules {
			config, limits := canonicalModule(mm)
			out = append(out, fmt.Sprintf("%s %d: %s config %s limits %s", st.name, i+1, mm.Module, config, limits))
		}
	}
	return out
}

// manifestDiff says how m differs from want, member by member.
func manifestDiff(m, want *manifest.Manifest) []string {
	var out []string
	if m.ABIVersion != want.ABIVersion {
		out = append(out, fmt.Sprintf("ABI version %d, expected %d", m.ABIVersion, want.ABIVersion))
	}
	if m.Model != want.Model {
		out = append(out, fmt.Sprintf("model %q, expected %q", m.Model, want.Model))
	}
	for i, st := range manifestStages(m) {
		wantModules := manifestStages(want)[i].modules
		if len(st.modules) != len(wantModules) {
			out = append(out, fmt.Sprintf("%d %s modules, expected %d", len(st.modules), st.name, len(wantModules)))
		}
		for j := range min(len(st.modules), len(wantModules)) {
			got, exp := st.modules[j], wantModules[j]
			gotConfig, gotLimits := canonicalModule(got)
			expConfig, expLimits := canonicalModule(exp)
			for _, d := range []struct{ what, got, want string }{
				{"module", got.Module, exp.Module}, {"config", gotConfig, expConfig}, {"limits", gotLimits, expLimits},
			} {
				if d.got != d.want {
					out = append(out, fmt.Sprintf("%s %d %s is %s, expected %s", st.name, j+1, d.what, d.got, d.want))
				}
			}
		}
	}
	if out == nil {
		out = []string{"the same members, encoded otherwise (not a canonical manifest)"}
	}
	return out
}
