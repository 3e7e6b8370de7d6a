package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
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

// testHost is a simulated host: a Sim with a sealed event log, a host key and a TLS
// key, producing evidence exactly as the host serves it.
type testHost struct {
	sim     *Sim
	log     *Log
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

// newTestHostWith is a simulated host whose sealed log holds events.
func newTestHostWith(t testing.TB, events []Event) *testHost {
	t.Helper()
	s, err := NewSim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &testHost{sim: s, log: NewLog(s.RTMR3())}
	for _, e := range events {
		if err := h.log.Append(e); err != nil {
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

func (h *testHost) pub() ed25519.PublicKey { return h.hostKey.Public().(ed25519.PublicKey) }

// evidence returns evidence serialised and parsed back, as a client receives it.
func (h *testHost) roundTrip(t testing.TB, ev Evidence) Evidence {
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
	rd, err := BootReportData(h.pub(), h.tlsSPKI, h.log.Digest())
	if err != nil {
		t.Fatal(err)
	}
	logJSON, err := h.log.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return h.roundTrip(t, Evidence{Mode: ModeSim, Quote: simQuote(t, h.sim, rd), EventLog: logJSON, HostKey: h.pub(), TLSKey: h.tlsSPKI})
}

func (h *testHost) pipeline(t testing.TB, manifest, nonce []byte) Evidence {
	t.Helper()
	mh := ManifestHash(manifest)
	rd, err := PipelineReportData(nonce, mh, h.pub())
	if err != nil {
		t.Fatal(err)
	}
	logJSON, err := h.log.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return h.roundTrip(t, Evidence{Mode: ModeSim, Quote: simQuote(t, h.sim, rd), EventLog: logJSON, HostKey: h.pub(), TLSKey: h.tlsSPKI,
		PipelineID: hex.EncodeToString(mh[:]), Manifest: manifest, Nonce: nonce})
}

func testNonce(b byte) []byte { return []byte(strings.Repeat(string(rune('a'+b)), 16)) }

func testPipelineID() string {
	h := sha256.Sum256(testManifest)
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

func TestVerifyEvidenceGood(t *testing.T) {
	h := newTestHost(t)
	pinned := Policy{
		MRTD:                 []string{hex.EncodeToString(SimMRTD[:])},
		RTMR0:                []string{hex.EncodeToString(SimRTMR0[:])},
		RTMR1:                []string{hex.EncodeToString(SimRTMR1[:])},
		RTMR2:                []string{hex.EncodeToString(SimRTMR2[:])},
		HostBinary:           []string{"sha256:" + hex.EncodeToString(bootEvents()[0].Data)},
		Models:               []string{"sha256:" + strings.Repeat("ab", 32)},
		ABIVersion:           1,
		SettlementKeys:       []string{hex.EncodeToString(testSettlementKey)},
		Sealing:              []string{SealingFile},
		SettlementKeyOrigins: []string{SettlementKeyGenerated},
	}
	opts := EvidenceOptions{SimRoot: h.sim.Root()}
	r := mustVerify(t, h.boot(t), pinned, opts)
	if !r.OK() {
		t.Fatalf("good boot evidence fails:\n%s", r)
	}
	for _, c := range r.Checks {
		if c.Skipped && c.Name != "TCB status" {
			t.Errorf("a pinned policy skips %q", c.Name)
		}
	}

	// An empty policy checks the same but says, line by line, what it left open.
	r = mustVerify(t, h.boot(t), Policy{}, opts)
	if !r.OK() {
		t.Fatalf("good boot evidence fails an open policy:\n%s", r)
	}
	for _, name := range []string{"MRTD", "RTMR0", "RTMR1", "RTMR2", "host binary", "ABI version", "model", "settlement key",
		"settlement key origin", "sealing", "TCB status"} {
		want := "skip " + name + ": "
		if !strings.Contains(r.String(), want) {
			t.Errorf("the report of an open policy lacks %q:\n%s", want, r)
		}
	}

	nonce := testNonce(0)
	popts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce,
		ExpectModules: []string{testModuleB, testModuleA}, HostKey: h.pub()}
	r = mustVerify(t, h.pipeline(t, testManifest, nonce), pinned, popts)
	if !r.OK() {
		t.Fatalf("good pipeline evidence fails:\n%s", r)
	}
	if !strings.Contains(r.String(), "ok   manifest: modules "+testModuleA+", "+testModuleB) {
		t.Errorf("the report does not list the modules:\n%s", r)
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
		return e.Type == EventSealing || e.Type == EventSettlementKeyOrigin
	}))
	otherManifest := []byte(strings.Replace(string(testManifest), testModuleB, "sha256:"+strings.Repeat("cd", 32), 1))
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
				logJSON, err := EncodeEventLog(append(sealed.log.Events(), late))
				if err != nil {
					t.Fatal(err)
				}
				ev.EventLog = logJSON
				return ev
			},
			opts:  EvidenceOptions{SimRoot: sealed.sim.Root()},
			fails: []string{"event log", "host binary", "ABI version", "model", "settlement key", "settlement key origin", "sealing", "REPORTDATA binding"}, detail: "event measured after boot-sealed",
		},
		{
			name:  "extension after the seal left out of the log",
			ev:    func() Evidence { return sealed.boot(t) },
			opts:  EvidenceOptions{SimRoot: sealed.sim.Root()},
			fails: []string{"event log", "host binary", "ABI version", "model", "settlement key", "settlement key origin", "sealing", "REPORTDATA binding"}, detail: "replay does not match RTMR3",
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
			fails: []string{"quote signature chain", "remaining checks"}, detail: "does not lead to a trusted root",
		},
		{
			name: "sim evidence claiming tdx",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.Mode = ModeTDX
				return ev
			},
			opts: trust, fails: []string{"evidence mode"}, detail: "the quote's chain says otherwise",
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
			opts: trust, fails: []string{"event log", "host binary", "ABI version", "model", "settlement key", "settlement key origin", "sealing", "REPORTDATA binding"}, detail: "unreadable",
		},
		{
			name: "garbage event log",
			ev: func() Evidence {
				ev := h.boot(t)
				ev.EventLog = json.RawMessage(`{"events":[{"type":"boot-sealed","data":"","digest":"00"}]}`)
				return ev
			},
			opts: trust, fails: []string{"event log", "host binary", "ABI version", "model", "settlement key", "settlement key origin", "sealing", "REPORTDATA binding"}, detail: "unreadable",
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
			opts:   EvidenceOptions{SimRoot: simSealed.sim.Root()}, fails: []string{"sealing"}, detail: "sim is not among the 1 values",
		},
		{
			name:   "settlement key the host imported",
			ev:     func() Evidence { return simSealed.boot(t) },
			policy: Policy{SettlementKeyOrigins: []string{SettlementKeyGenerated}},
			opts:   EvidenceOptions{SimRoot: simSealed.sim.Root()}, fails: []string{"settlement key origin"}, detail: "imported is not among",
		},
		{
			name:   "a policy that requires a sealing source, a host that measures none",
			ev:     func() Evidence { return unsealed.boot(t) },
			policy: Policy{Sealing: []string{SealingFile}, SettlementKeyOrigins: []string{SettlementKeyGenerated}},
			opts:   EvidenceOptions{SimRoot: unsealed.sim.Root()}, fails: []string{"settlement key origin", "sealing"}, detail: "the event log does not measure it",
		},
	}
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
		{"nonce without pipeline", Policy{}, EvidenceOptions{Nonce: testNonce(0)}},
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
		`"],"models":["llama"],"abi_version":1,"min_tcb_status":"any","trust_sim_root":""}`
	p, err := ParsePolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.MRTD) != 1 || p.ABIVersion != 1 || p.Models[0] != "llama" {
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
		"not an object":                 `[]`,
		"empty input":                   ``,
	} {
		if _, err := ParsePolicy([]byte(bad)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: err %v, want ErrPolicy", name, err)
		}
	}
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

// TestReportJSON pins the JSON report's shape: the format, the verdict, and every check
// in order.
func TestReportJSON(t *testing.T) {
	r := &Report{}
	r.pass("a", "fine")
	r.skip("b", "open")
	r.fail("c", "bad %d", 1)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"format":"cocoon-verify-report/v1","ok":false,"checks":[{"name":"a","verdict":"ok","detail":"fine"},{"name":"b","verdict":"skip","detail":"open"},{"name":"c","verdict":"fail","detail":"bad 1"}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
