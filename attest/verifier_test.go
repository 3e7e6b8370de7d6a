package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testHost is a simulated host: a Sim whose RTMR3 was extended with events, a host key
// and a TLS key, producing evidence exactly as the host serves it.
type testHost struct {
	sim     *Sim
	events  []Event
	hostKey ed25519.PrivateKey
	tlsSPKI []byte
}

const (
	testModuleA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testModuleB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	testLimits  = `{"memory_pages":256,"time_ms":1000,"input_bytes":1048576,"output_bytes":1048576,"log_bytes":4096}`
)

// testManifest is a canonical manifest with modules A (pre) and B (post).
var testManifest = []byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + testModuleA + `","config":null,"limits":` + testLimits +
	`}],"post":[{"module":"` + testModuleB + `","config":{"x":1},"limits":` + testLimits + `}]}`)

func newTestHost(t testing.TB) *testHost {
	t.Helper()
	return newTestHostWith(t, bootEvents())
}

// newTestHostWith is a simulated host whose RTMR3 holds events, in order: any events,
// also a log no Log would write (out of order, incomplete), as a forged host would.
func newTestHostWith(t testing.TB, events []Event) *testHost {
	t.Helper()
	s, err := NewSim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newTestHostOn(t, s, events)
}

// newTestHostOn is newTestHostWith on the simulator s.
func newTestHostOn(t testing.TB, s *Sim, events []Event) *testHost {
	t.Helper()
	h := &testHost{sim: s, events: events}
	for _, e := range events {
		if err := s.RTMR3().Extend(e.Digest()); err != nil {
			t.Fatal(err)
		}
	}
	_, h.hostKey, _ = ed25519.GenerateKey(nil)
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if h.tlsSPKI, err = x509.MarshalPKIXPublicKey(&tlsKey.PublicKey); err != nil {
		t.Fatal(err)
	}
	return h
}

// logJSON and digest are the event log as served, and its replay.
func (h *testHost) logJSON(t testing.TB) []byte {
	t.Helper()
	b, err := EncodeEventLog(h.events)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *testHost) digest(t testing.TB) [48]byte {
	t.Helper()
	d, err := Replay(h.events)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *testHost) pub() ed25519.PublicKey { return h.hostKey.Public().(ed25519.PublicKey) }

// roundTrip returns evidence serialised and parsed back, as a client receives it.
func roundTrip(t testing.TB, ev Evidence) Evidence {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	return *parsed
}

func (h *testHost) boot(t testing.TB) Evidence {
	t.Helper()
	rd, err := BootReportData(h.pub(), h.tlsSPKI, h.digest(t))
	if err != nil {
		t.Fatal(err)
	}
	return roundTrip(t, Evidence{Mode: ModeSim, Quote: simQuote(t, h.sim, rd), EventLog: h.logJSON(t), HostKey: h.pub(), TLSKey: h.tlsSPKI})
}

// freshBoot is boot evidence quoted for nonce, as GET /v1/attestation?nonce= serves it.
func (h *testHost) freshBoot(t testing.TB, nonce []byte) Evidence {
	t.Helper()
	rd, err := FreshBootReportData(nonce, h.pub(), h.tlsSPKI, h.digest(t))
	if err != nil {
		t.Fatal(err)
	}
	return roundTrip(t, Evidence{Mode: ModeSim, Quote: simQuote(t, h.sim, rd), EventLog: h.logJSON(t), HostKey: h.pub(), TLSKey: h.tlsSPKI, Nonce: nonce})
}

func (h *testHost) pipeline(t testing.TB, manifest, nonce []byte) Evidence {
	t.Helper()
	mh := ManifestHash(manifest)
	rd, err := PipelineReportData(nonce, mh, h.pub())
	if err != nil {
		t.Fatal(err)
	}
	return roundTrip(t, Evidence{Mode: ModeSim, Quote: simQuote(t, h.sim, rd), EventLog: h.logJSON(t), HostKey: h.pub(), TLSKey: h.tlsSPKI,
		PipelineID: hex.EncodeToString(mh[:]), Manifest: manifest, Nonce: nonce})
}

func testNonce(b byte) []byte { return []byte(strings.Repeat(string(rune('a'+b)), 16)) }

func testPipelineID() string { return pipelineIDOf(testManifest) }

func pipelineIDOf(manifest []byte) string {
	h := ManifestHash(manifest)
	return hex.EncodeToString(h[:])
}

// failed returns the names of the failed checks.
func failed(r *Report) []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

func mustVerify(t *testing.T, ev Evidence, p Policy, opts EvidenceOptions) *Report {
	t.Helper()
	r, err := VerifyEvidence(ev, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pinnedPolicy pins every measurement of a newTestHost.
func pinnedPolicy() Policy {
	h := func(b []byte) []string { return []string{hex.EncodeToString(b)} }
	events := bootEvents()
	return Policy{
		MRTD: h(SimMRTD[:]), RTMR0: h(SimRTMR0[:]), RTMR1: h(SimRTMR1[:]), RTMR2: h(SimRTMR2[:]),
		TDAttributes: h(make([]byte, 8)), XFAM: h(make([]byte, 8)), MRSEAM: h(simMRSEAM[:]),
		MROwner: h(make([]byte, 48)), MRConfigID: h(make([]byte, 48)), MROwnerConfig: h(make([]byte, 48)),
		HostBinary:           []string{"sha256:" + hex.EncodeToString(events[0].Data)},
		ABIVersion:           1,
		SandboxPolicy:        []string{"sha256:" + hex.EncodeToString(events[2].Data)},
		Backends:             []string{"embedded"},
		Models:               []string{"sha256:" + strings.Repeat("ab", 32)},
		Sealing:              []string{SealingFile},
		SettlementKeys:       []string{hex.EncodeToString(testSettlementKey)},
		SettlementKeyOrigins: []string{SettlementKeyGenerated},
		MinTCBStatus:         TCBAny,
	}
}

// measurementLines are the report lines of the measurements a policy may pin.
var measurementLines = []string{"TCB status", "MRTD", "RTMR0", "RTMR1", "RTMR2", "TD attributes", "XFAM", "MRSEAM", "MROWNER",
	"MRCONFIGID", "MROWNERCONFIG", "host binary", "ABI version", "sandbox policy", "backend", "model", "sealing",
	"settlement key", "settlement key origin"}

func TestVerifyEvidenceGood(t *testing.T) {
	h := newTestHost(t)
	opts := EvidenceOptions{SimRoot: h.sim.Root()}
	r := mustVerify(t, h.boot(t), pinnedPolicy(), opts)
	if !r.OK() {
		t.Fatalf("good boot evidence fails:\n%s", r)
	}
	for _, c := range r.Checks {
		if c.Skipped {
			t.Errorf("a pinned policy skips %q", c.Name)
		}
	}

	// An empty policy checks the same but says, line by line, what it left open.
	r = mustVerify(t, h.boot(t), Policy{}, opts)
	if !r.OK() {
		t.Fatalf("good boot evidence fails an open policy:\n%s", r)
	}
	for _, name := range measurementLines {
		want := "skip " + name + ": "
		if !strings.Contains(r.String(), want) {
			t.Errorf("the report of an open policy lacks %q:\n%s", want, r)
		}
	}
	// It prints every measured event, and where prompts go.
	for _, e := range bootEvents() {
		if !strings.Contains(r.String(), ". "+e.String()+"\n") {
			t.Errorf("the report does not print the event %s:\n%s", e, r)
		}
	}
	if !strings.Contains(r.String(), "ok   where prompts go: they stay inside the TD: the embedded engine, in the host process") {
		t.Errorf("the report does not say where prompts go:\n%s", r)
	}

	nonce := testNonce(0)
	popts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce,
		ExpectModules: []string{testModuleB, testModuleA}, ExpectManifest: testManifest, HostKey: h.pub()}
	r = mustVerify(t, h.pipeline(t, testManifest, nonce), pinnedPolicy(), popts)
	if !r.OK() || !r.Fresh {
		t.Fatalf("good pipeline evidence fails, or is not fresh:\n%s", r)
	}
	for _, want := range []string{
		"ok   manifest: modules " + testModuleA + ", " + testModuleB + `; model "m", ABI version 1`,
		"\n       pre 1: " + testModuleA + " config null limits " + testLimits + "\n",
		"\n       post 1: " + testModuleB + ` config {"x":1} limits ` + testLimits + "\n",
		"ok   expected manifest: the pipeline is exactly the one expected",
	} {
		if !strings.Contains(r.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, r)
		}
	}
}

// A host's text (its backend or model, which a GPU server may name) cannot forge lines
// of the report a reviewer reads.
func TestReportEscapesHostText(t *testing.T) {
	events := bootEvents()
	events[4] = ModelEvent("m\nok   MRTD: the host is genuine\x1b[2K")
	h := newTestHostWith(t, events)
	r := mustVerify(t, h.boot(t), Policy{}, EvidenceOptions{SimRoot: h.sim.Root()})
	for _, line := range strings.Split(r.String(), "\n") {
		if strings.HasPrefix(line, "ok   MRTD: the host") || strings.Contains(line, "\x1b") {
			t.Errorf("forged or raw line %q in:\n%s", line, r)
		}
	}
	if !strings.Contains(r.String(), `m\nok   MRTD: the host is genuine\x1b[2K`) {
		t.Errorf("the model is not shown escaped:\n%s", r)
	}
}

// TestVerifyEvidenceTamper is the tamper matrix: each case must fail exactly the checks
// that name its reason, and no other.
func TestVerifyEvidenceTamper(t *testing.T) {
	h := newTestHost(t)
	other := newTestHost(t)
	trust := EvidenceOptions{SimRoot: h.sim.Root()}
	nonce := testNonce(0)
	pipelineOpts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce}

	// sealed is a host whose RTMR3 was extended after the seal.
	sealed := newTestHost(t)
	late := ModelEvent("late model")
	if err := sealed.sim.RTMR3().Extend(late.Digest()); err != nil {
		t.Fatal(err)
	}
	// simSealed measures sim sealing and an imported settlement key; unsealed is a host
	// of an earlier version, which measured neither.
	events := bootEvents()
	for i, e := range events {
		switch e.Type {
		case EventSealing:
			events[i] = SealingEvent(SealingSim)
		case EventSettlementKeyOrigin:
			events[i] = SettlementKeyOriginEvent(SettlementKeyImported)
		}
	}
	simSealed := newTestHostWith(t, events)
	unsealed := newTestHostWith(t, slices.DeleteFunc(bootEvents(), func(e Event) bool {
		return e.Type == EventSealing || e.Type == EventSettlementKey || e.Type == EventSettlementKeyOrigin
	}))
	// logFails are the checks that fail with an event log that does not verify.
	logFails := []string{"event log", "host binary", "ABI version", "sandbox policy", "backend", "model", "sealing",
		"settlement key", "settlement key origin", "REPORTDATA binding", "GPUs"}
	otherManifest := []byte(strings.Replace(string(testManifest), testModuleB, "sha256:"+strings.Repeat("cd", 32), 1))
	// The same modules, the post module configured otherwise: what --expect-module
	// cannot tell apart.
	reconfigured := []byte(strings.Replace(string(testManifest), `{"x":1}`, `{"x":0}`, 1))
	// debug is a debug TD; outside sends prompts to a server outside the TD; the others
	// measure a log no host writes: without events, or out of order.
	debugSim, err := NewSim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	debugSim.tdAttributes[0] |= TDAttributeDebug
	debug := newTestHostOn(t, debugSim, bootEvents())
	const outsideBackend = "openai http://203.0.113.7:8000/v1"
	outsideEvents := bootEvents()
	outsideEvents[3] = BackendEvent(outsideBackend)
	outside := newTestHostWith(t, outsideEvents)
	without := func(types ...EventType) *testHost {
		return newTestHostWith(t, slices.DeleteFunc(bootEvents(), func(e Event) bool { return slices.Contains(types, e.Type) }))
	}
	noBackend, noSandboxNoBackend := without(EventBackend), without(EventSandboxPolicy, EventBackend)
	reorderedEvents := bootEvents()
	reorderedEvents[3], reorderedEvents[4] = reorderedEvents[4], reorderedEvents[3]
	reordered := newTestHostWith(t, reorderedEvents)
	tests := []struct {
		name   string
		ev     func() Evidence
		policy Policy
		opts   EvidenceOptions
		fails  []string
		detail string // in the first failing check
	}{
		{
			name: "changed REPORTDATA in the quote bytes",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Quote[offReportData] ^= 1
				return ev
			},
			opts: trust, fails: []string{"quote signature chain", "remaining checks"}, detail: "signature over header and TD report does not verify",
		},
		{
			name: "changed RTMR3 in the quote bytes",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Quote[offRTMR3] ^= 1
				return ev
			},
			opts: trust, fails: []string{"quote signature chain", "remaining checks"}, detail: "signature over header and TD report does not verify",
		},
		{
			name: "quote signed for other report data",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Quote = simQuote(t, h.sim, [64]byte{1})
				return ev
			},
			opts: trust, fails: []string{"REPORTDATA binding"}, detail: "does not bind this host key, TLS key and event log",
		},
		{
			name: "wrong nonce echoed",
			ev: func() Evidence {
				ev := h.pipeline(t, testManifest, nonce)
				ev.Nonce = testNonce(1)
				return ev
			},
			opts: pipelineOpts, fails: []string{"nonce"}, detail: "not the fresh nonce",
		},
		{
			name: "replayed old quote",
			ev:   func() Evidence { return h.pipeline(t, testManifest, testNonce(1)) },
			opts: pipelineOpts, fails: []string{"nonce", "REPORTDATA binding"}, detail: "a replayed or substituted quote",
		},
		{
			name: "old quote with the new nonce pasted in",
			ev: func() Evidence {
				ev := h.pipeline(t, testManifest, testNonce(1))
				ev.Nonce = nonce
				return ev
			},
			opts: pipelineOpts, fails: []string{"REPORTDATA binding"}, detail: "does not bind this client's nonce",
		},
		{
			name: "event appended after the seal",
			ev: func() Evidence {
				ev := sealed.boot(t)
				logJSON, err := EncodeEventLog(append(sealed.events, late))
				if err != nil {
					t.Fatal(err)
				}
				ev.EventLog = logJSON
				return ev
			},
			opts:  EvidenceOptions{SimRoot: sealed.sim.Root()},
			fails: logFails, detail: "event measured after boot-sealed",
		},
		{
			name:  "extension after the seal left out of the log",
			ev:    func() Evidence { return sealed.boot(t) },
			opts:  EvidenceOptions{SimRoot: sealed.sim.Root()},
			fails: logFails, detail: "replay does not match RTMR3",
		},
		{
			name:  "module differs from the expected one",
			ev:    func() Evidence { return h.pipeline(t, testManifest, nonce) },
			opts:  EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, ExpectModules: []string{"sha256:" + strings.Repeat("cd", 32)}},
			fails: []string{"expected modules"}, detail: "does not run sha256:cdcd",
		},
		{
			name: "swapped TLS key",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.TLSKey = other.tlsSPKI
				return ev
			},
			opts: trust, fails: []string{"REPORTDATA binding"}, detail: "keys or the log were swapped",
		},
		{
			name: "swapped host key",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.HostKey = other.pub()
				return ev
			},
			opts: trust, fails: []string{"REPORTDATA binding"}, detail: "keys or the log were swapped",
		},
		{
			name:  "pipeline evidence from another host key",
			ev:    func() Evidence { return h.pipeline(t, testManifest, nonce) },
			opts:  EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, HostKey: other.pub()},
			fails: []string{"host key"}, detail: "another host",
		},
		{
			name:  "sim evidence without explicit trust",
			ev:    func() Evidence { return h.boot(t) },
			fails: []string{"quote signature chain", "evidence mode", "remaining checks"}, detail: "simulated evidence",
		},
		{
			name:  "sim evidence trusting another sim root",
			ev:    func() Evidence { return h.boot(t) },
			opts:  EvidenceOptions{SimRoot: other.sim.Root()},
			fails: []string{"quote signature chain", "remaining checks"}, detail: "not signed by the given simulator root, nor by Intel's: quote: certificate chain does not lead to a trusted root",
		},
		{
			name: "sim evidence claiming tdx",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Mode = ModeTDX
				return ev
			},
			opts: trust, fails: []string{"evidence mode"}, detail: "not at Intel's SGX Root CA: a simulator's root or a look-alike",
		},
		{
			name: "truncated quote",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Quote = ev.Quote[:len(ev.Quote)/2]
				return ev
			},
			opts: trust, fails: []string{"quote signature chain", "remaining checks"}, detail: "quote: truncated",
		},
		{
			name: "garbage quote",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Quote = []byte("not a quote at all, just some bytes")
				return ev
			},
			opts: trust, fails: []string{"quote signature chain", "remaining checks"}, detail: "not a TDX quote",
		},
		{
			name: "truncated event log",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.EventLog = ev.EventLog[:len(ev.EventLog)/2]
				return ev
			},
			opts: trust, fails: logFails, detail: "unreadable",
		},
		{
			name: "garbage event log",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.EventLog = json.RawMessage(`{"events":[{"type":"boot-sealed","data":"","digest":"00"}]}`)
				return ev
			},
			opts: trust, fails: logFails, detail: "unreadable",
		},
		{
			name:  "evidence for another pipeline",
			ev:    func() Evidence { return h.pipeline(t, otherManifest, nonce) },
			opts:  pipelineOpts,
			fails: []string{"pipeline id"}, detail: "as asked",
		},
		{
			name: "manifest swapped under the right pipeline id",
			ev: func() Evidence {
				ev := h.pipeline(t, testManifest, nonce)
				ev.Manifest = otherManifest
				return ev
			},
			opts: pipelineOpts, fails: []string{"pipeline id", "REPORTDATA binding"}, detail: "not this pipeline's manifest",
		},
		{
			name:  "boot evidence where pipeline evidence was asked",
			ev:    func() Evidence { return h.boot(t) },
			opts:  pipelineOpts,
			fails: []string{"evidence kind", "pipeline id", "nonce", "REPORTDATA binding", "manifest"}, detail: "without a pipeline id",
		},
		{
			name:   "MRTD the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{MRTD: []string{strings.Repeat("00", 48)}},
			opts:   trust, fails: []string{"MRTD"}, detail: "not among the 1 values the policy allows",
		},
		{
			name:   "host binary the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{HostBinary: []string{"sha256:" + strings.Repeat("00", 32)}},
			opts:   trust, fails: []string{"host binary"}, detail: "host-binary measurement is not one the policy knows",
		},
		{
			name:   "ABI version the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{ABIVersion: 2},
			opts:   trust, fails: []string{"ABI version"}, detail: "1 is not among",
		},
		{
			name:   "model the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{Models: []string{"other"}},
			opts:   trust, fails: []string{"model"}, detail: "is not among",
		},
		{
			name:   "settlement key the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{SettlementKeys: []string{strings.Repeat("00", 32)}},
			opts:   trust, fails: []string{"settlement key"}, detail: "settlement-key measurement is not one the policy knows",
		},
		{
			name:   "sealing source the policy does not allow",
			ev:     func() Evidence { return simSealed.boot(t) },
			policy: Policy{Sealing: []string{SealingFile}},
			opts:   EvidenceOptions{SimRoot: simSealed.sim.Root()}, fails: []string{"sealing"}, detail: `"sim" is not among the 1 values`,
		},
		{
			name:   "settlement key the host imported",
			ev:     func() Evidence { return simSealed.boot(t) },
			policy: Policy{SettlementKeyOrigins: []string{SettlementKeyGenerated}},
			opts:   EvidenceOptions{SimRoot: simSealed.sim.Root()}, fails: []string{"settlement key origin"}, detail: `"imported" is not among`,
		},
		{
			name:   "a policy that requires a sealing source, a host that measures none",
			ev:     func() Evidence { return unsealed.boot(t) },
			policy: Policy{Sealing: []string{SealingFile}, SettlementKeyOrigins: []string{SettlementKeyGenerated}},
			opts:   EvidenceOptions{SimRoot: unsealed.sim.Root()}, fails: []string{"sealing", "settlement key origin"}, detail: "the event log does not measure it",
		},
	}
	tests = append(tests, []struct {
		name   string
		ev     func() Evidence
		policy Policy
		opts   EvidenceOptions
		fails  []string
		detail string
	}{
		{
			name:  "debug TD",
			ev:    func() Evidence { return debug.boot(t) },
			opts:  EvidenceOptions{SimRoot: debugSim.Root()},
			fails: []string{"TD attributes"}, detail: "0100000000000000 (DEBUG): a debug TD, refused whatever the policy says",
		},
		{
			name:   "TD attributes the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{TDAttributes: []string{"0000001000000000"}},
			opts:   trust, fails: []string{"TD attributes"}, detail: "0000000000000000 (none set) is not among the 1 values",
		},
		{
			name:   "MROWNER the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{MROwner: []string{strings.Repeat("11", 48)}},
			opts:   trust, fails: []string{"MROWNER"}, detail: "TD owner's identity is not one the policy knows",
		},
		{
			name:  "backend outside the TD",
			ev:    func() Evidence { return outside.boot(t) },
			opts:  EvidenceOptions{SimRoot: outside.sim.Root()},
			fails: []string{"where prompts go"}, detail: "they leave the TD, to an OpenAI-compatible server at http://203.0.113.7:8000/v1, over the network",
		},
		{
			name:   "backend outside the TD that the policy names",
			ev:     func() Evidence { return outside.boot(t) },
			policy: Policy{Backends: []string{outsideBackend}},
			opts:   EvidenceOptions{SimRoot: outside.sim.Root()},
		},
		{
			name:   "backend the policy does not allow",
			ev:     func() Evidence { return outside.boot(t) },
			policy: Policy{Backends: []string{"embedded"}},
			opts:   EvidenceOptions{SimRoot: outside.sim.Root()},
			fails:  []string{"backend", "where prompts go"}, detail: `"openai http://203.0.113.7:8000/v1" is not among the 1 values`,
		},
		{
			name:   "sandbox policy the policy does not allow",
			ev:     func() Evidence { return h.boot(t) },
			policy: Policy{SandboxPolicy: []string{"sha256:" + strings.Repeat("00", 32)}},
			opts:   trust, fails: []string{"sandbox policy"}, detail: "sandbox-policy measurement is not one the policy knows",
		},
		{
			name:  "a log without a backend event",
			ev:    func() Evidence { return noBackend.boot(t) },
			opts:  EvidenceOptions{SimRoot: noBackend.sim.Root()},
			fails: logFails, detail: "a required event is missing: the log measures no backend event",
		},
		{
			name:  "a log without sandbox-policy and backend events",
			ev:    func() Evidence { return noSandboxNoBackend.boot(t) },
			opts:  EvidenceOptions{SimRoot: noSandboxNoBackend.sim.Root()},
			fails: logFails, detail: "a required event is missing: the log measures no sandbox-policy event",
		},
		{
			name:  "events out of the documented order",
			ev:    func() Evidence { return reordered.boot(t) },
			opts:  EvidenceOptions{SimRoot: reordered.sim.Root()},
			fails: logFails, detail: "event out of the documented order: event 4 (backend) comes after model",
		},
		{
			name: "a disabling config the expected modules cannot see",
			ev:   func() Evidence { return h.pipeline(t, reconfigured, nonce) },
			opts: EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: pipelineIDOf(reconfigured), Nonce: nonce,
				ExpectModules: []string{testModuleA, testModuleB}, ExpectManifest: testManifest},
			fails: []string{"expected manifest"}, detail: `the pipeline is not the one expected: post 1 config is {"x":0}, expected {"x":1}`,
		},
		{
			name:  "fresh boot evidence for another nonce",
			ev:    func() Evidence { return h.freshBoot(t, testNonce(1)) },
			opts:  EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce},
			fails: []string{"nonce", "REPORTDATA binding"}, detail: "a replayed or substituted quote",
		},
		{
			name:  "boot quote under a nonce pasted in",
			ev:    func() Evidence { ev := h.boot(t); ev.Nonce = nonce; return ev },
			opts:  EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce},
			fails: []string{"REPORTDATA binding"}, detail: "does not bind this host key, TLS key, event log and nonce",
		},
		{
			name:  "fresh boot quote with its nonce removed",
			ev:    func() Evidence { ev := h.freshBoot(t, nonce); ev.Nonce = nil; return ev },
			opts:  trust,
			fails: []string{"REPORTDATA binding"}, detail: "does not bind this host key, TLS key and event log",
		},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustVerify(t, tt.ev(), tt.policy, tt.opts)
			if got := failed(r); strings.Join(got, "|") != strings.Join(tt.fails, "|") {
				t.Fatalf("failed checks %q, want %q:\n%s", got, tt.fails, r)
			}
			for _, c := range r.Checks {
				if !c.OK {
					if !strings.Contains(c.Detail, tt.detail) {
						t.Errorf("first failure %q does not say %q", c, tt.detail)
					}
					break
				}
			}
		})
	}
}

func TestVerifyEvidenceCallerErrors(t *testing.T) {
	h := newTestHost(t)
	ev := h.boot(t)
	tests := []struct {
		name string
		p    Policy
		opts EvidenceOptions
	}{
		{"bad policy", Policy{MRTD: []string{"00"}}, EvidenceOptions{}},
		{"unreadable policy sim root", Policy{TrustSimRoot: filepath.Join(t.TempDir(), "missing.pem")}, EvidenceOptions{}},
		{"short boot nonce", Policy{}, EvidenceOptions{Nonce: []byte("short")}},
		{"expected manifest without pipeline", Policy{}, EvidenceOptions{ExpectManifest: testManifest}},
		{"expected manifest not a manifest", Policy{}, EvidenceOptions{PipelineID: testPipelineID(), Nonce: testNonce(0), ExpectManifest: []byte(`{"model":1}`)}},
		{"debug TD in the policy", Policy{TDAttributes: []string{"0100000000000000"}}, EvidenceOptions{}},
		{"pipeline without nonce", Policy{}, EvidenceOptions{PipelineID: testPipelineID()}},
		{"short nonce", Policy{}, EvidenceOptions{PipelineID: testPipelineID(), Nonce: []byte("short")}},
		{"bad pipeline id", Policy{}, EvidenceOptions{PipelineID: "ab", Nonce: testNonce(0)}},
		{"bad expected module", Policy{}, EvidenceOptions{PipelineID: testPipelineID(), Nonce: testNonce(0), ExpectModules: []string{"aa"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := VerifyEvidence(ev, tt.p, tt.opts); err == nil {
				t.Fatalf("no error; report:\n%s", r)
			}
		})
	}
}

func TestPolicySimRootTrustsSimEvidence(t *testing.T) {
	h := newTestHost(t)
	dir := t.TempDir()
	pemText := string(pemCert(h.sim.Root()))
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), []byte(pemText), 0o644); err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policyPath, []byte(`{"trust_sim_root":"root.pem","min_tcb_status":"any"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile, err := LoadPolicy(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]Policy{"path relative to the policy": *fromFile, "PEM": {TrustSimRoot: pemText}} {
		if r := mustVerify(t, h.boot(t), p, EvidenceOptions{}); !r.OK() {
			t.Errorf("%s: sim evidence fails with its root trusted by the policy:\n%s", name, r)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	good := `{"mrtd":["` + strings.Repeat("ab", 48) + `"],"rtmr0":[],"host_binary":["sha256:` + strings.Repeat("01", 32) +
		`"],"models":["llama"],"abi_version":1,"min_tcb_status":"any","trust_sim_root":"",` +
		`"td_attributes":["0000001000000000"],"xfam":["e702060000000000"],"mr_seam":["` + strings.Repeat("cd", 48) + `"],` +
		`"mr_owner":["` + strings.Repeat("00", 48) + `"],"mr_config_id":[],"mr_owner_config":["` + strings.Repeat("01", 48) + `"],` +
		`"sandbox_policy":["sha256:` + strings.Repeat("02", 32) + `"],"backends":["embedded","openai http://10.0.0.2:8000/v1"]}`
	p, err := ParsePolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.MRTD) != 1 || p.ABIVersion != 1 || p.Models[0] != "llama" || p.TDAttributes[0] != "0000001000000000" ||
		p.XFAM[0] != "e702060000000000" || len(p.MRSEAM) != 1 || len(p.MROwner) != 1 || len(p.MROwnerConfig) != 1 ||
		len(p.SandboxPolicy) != 1 || p.Backends[1] != "openai http://10.0.0.2:8000/v1" {
		t.Errorf("parsed %+v", p)
	}
	for name, bad := range map[string]string{
		"unknown member":                `{"mrtdd":[]}`,
		"trailing data":                 `{} {}`,
		"short mrtd":                    `{"mrtd":["abcd"]}`,
		"uppercase rtmr":                `{"rtmr1":["` + strings.Repeat("AB", 48) + `"]}`,
		"bare host hash":                `{"host_binary":["` + strings.Repeat("01", 32) + `"]}`,
		"empty model":                   `{"models":[""]}`,
		"unknown tcb":                   `{"min_tcb_status":"uptodate"}`,
		"unknown sealing source":        `{"sealing":["tpm"]}`,
		"unknown settlement key origin": `{"settlement_key_origins":["escrowed"]}`,
		"revoked tcb":                   `{"min_tcb_status":"Revoked"}`,
		"negative abi":                  `{"abi_version":-1}`,
		"debug TD":                      `{"td_attributes":["0100000000000000"]}`,
		"debug TD among others":         `{"td_attributes":["0000001000000000","0100001000000000"]}`,
		"short td_attributes":           `{"td_attributes":["00"]}`,
		"xfam as a number":              `{"xfam":[3]}`,
		"long xfam":                     `{"xfam":["` + strings.Repeat("00", 9) + `"]}`,
		"short mr_seam":                 `{"mr_seam":["00"]}`,
		"uppercase mr_owner":            `{"mr_owner":["` + strings.Repeat("AB", 48) + `"]}`,
		"mr_config_id not hex":          `{"mr_config_id":["` + strings.Repeat("zz", 48) + `"]}`,
		"short mr_owner_config":         `{"mr_owner_config":["` + strings.Repeat("00", 47) + `"]}`,
		"bare sandbox policy hash":      `{"sandbox_policy":["` + strings.Repeat("01", 32) + `"]}`,
		"empty backend":                 `{"backends":[""]}`,
		"backend not a list":            `{"backends":"embedded"}`,
		"not an object":                 `[]`,
		"empty input":                   ``,
	} {
		if _, err := ParsePolicy([]byte(bad)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: err %v, want ErrPolicy", name, err)
		}
	}
}

// FuzzParsePolicy: a policy file is outside bytes (a reviewer may be handed one). The
// parser never panics, and whatever it accepts encodes back to a policy it accepts
// again, the same.
func FuzzParsePolicy(f *testing.F) {
	b, err := json.Marshal(pinnedPolicy())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"td_attributes":["0100000000000000"]}`))
	f.Add([]byte(`{"min_tcb_status":"any","backends":["openai http://127.0.0.1/v1"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("error %v does not wrap ErrPolicy", err)
			}
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := ParsePolicy(again)
		if err != nil {
			t.Fatalf("a parsed policy does not parse again: %v\n%s", err, again)
		}
		if again2, _ := json.Marshal(p2); string(again2) != string(again) {
			t.Fatalf("round trip changed the policy:\n%s\n%s", again, again2)
		}
		for _, a := range p.TDAttributes {
			if h, _ := hex.DecodeString(a); h[0]&TDAttributeDebug != 0 {
				t.Fatalf("accepted a debug TD: %s", a)
			}
		}
	})
}

func TestParseEvidenceRefuses(t *testing.T) {
	for name, bad := range map[string]string{
		"unknown member":  `{"mode":"sim","extra":1}`,
		"trailing data":   `{"mode":"sim"} x`,
		"quote not b64":   `{"quote":"!!"}`,
		"truncated":       `{"mode":"si`,
		"garbage":         "\x00\x01",
		"oversized input": `{"mode":"` + strings.Repeat("a", MaxEvidenceBytes) + `"}`,
	} {
		if _, err := ParseEvidence([]byte(bad)); !errors.Is(err, ErrEvidenceEncoding) {
			t.Errorf("%s: err %v, want ErrEvidenceEncoding", name, err)
		}
	}
}

// FuzzVerifyEvidence feeds arbitrary JSON to the client's entry point, ParseEvidence
// then VerifyEvidence: neither may panic, and nothing but the seed itself may verify.
func FuzzVerifyEvidence(f *testing.F) {
	h := newTestHost(f)
	good, err := json.Marshal(h.boot(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"mode":"tdx","quote":"AAAA","event_log":{"events":[]}}`))
	f.Add([]byte(`{}`))
	opts := EvidenceOptions{SimRoot: h.sim.Root()}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b)
		if err != nil {
			return
		}
		r, err := VerifyEvidence(*ev, Policy{}, opts)
		if err != nil {
			t.Fatalf("evidence made VerifyEvidence fail as if for a caller's mistake: %v", err)
		}
		if r.OK() && (ev.Mode != ModeSim || !bytes.Equal(ev.HostKey, h.pub())) {
			t.Fatalf("evidence not from the test host verifies:\n%s", r)
		}
	})
}
