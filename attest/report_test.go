package attest

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// lookAlikeSim is a simulator whose root carries Intel's names: "Intel SGX Root CA",
// organisation "Intel Corporation", as a forger would make it.
func lookAlikeSim(t *testing.T) *Sim {
	t.Helper()
	dir := t.TempDir()
	name := pkix.Name{CommonName: "Intel SGX Root CA", Organization: []string{"Intel Corporation"}}
	if _, _, err := createSimRoot(filepath.Join(dir, SimRootFile), filepath.Join(dir, simRootKeyFile), name); err != nil {
		t.Fatal(err)
	}
	s, err := NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Probe 4: whether evidence is simulated is decided by the root's key, not its name. A
// look-alike root trusted as a simulator root is reported as one, and evidence that
// says tdx but chains to it fails.
func TestLookAlikeRoot(t *testing.T) {
	s := lookAlikeSim(t)
	h := newTestHostOn(t, s, bootEvents())
	pool := x509.NewCertPool()
	pool.AddCert(s.Root())
	q, err := VerifyQuote(h.boot(t).Quote, VerifyOptions{TrustedRoots: pool})
	if err != nil {
		t.Fatal(err)
	}
	if !q.Simulated {
		t.Fatal("a quote chained to a look-alike root is taken for Intel's")
	}

	claimsTDX := h.boot(t)
	claimsTDX.Mode = ModeTDX
	r := mustVerify(t, claimsTDX, Policy{}, EvidenceOptions{SimRoot: s.Root()})
	if got := failed(r); !slices.Equal(got, []string{"evidence mode"}) {
		t.Fatalf("failed %q, want the evidence mode:\n%s", got, r)
	}
	for _, want := range []string{
		`ok   quote signature chain: signed by the quote's attestation key, vouched for by a PCK chain to a root trusted explicitly, "CN=Intel SGX Root CA,O=Intel Corporation", which is NOT Intel's SGX Root CA`,
		`FAIL evidence mode: the host says "tdx" but the quote's chain ends at "CN=Intel SGX Root CA,O=Intel Corporation", not at Intel's SGX Root CA`,
	} {
		if !strings.Contains(r.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.String(), "vouched for by a PCK chain to Intel's SGX Root CA") {
		t.Errorf("the report says Intel vouches:\n%s", r)
	}

	// Said to be sim, it verifies as sim; untrusted, it is refused by what it is.
	if r := mustVerify(t, h.boot(t), Policy{}, EvidenceOptions{SimRoot: s.Root()}); !r.OK() || !strings.Contains(r.String(), "ok   evidence mode: sim, trusted explicitly") {
		t.Errorf("look-alike sim evidence, trusted:\n%s", r)
	}
	r = mustVerify(t, claimsTDX, Policy{}, EvidenceOptions{})
	if !strings.Contains(r.String(), `FAIL quote signature chain: quote: certificate chain does not lead to a trusted root: the quote's chain ends at "CN=Intel SGX Root CA,O=Intel Corporation"`) {
		t.Errorf("look-alike evidence, not trusted:\n%s", r)
	}
}

// Probe 7: boot evidence without a nonce is not fresh (a warning, and strict fails);
// with the client's nonce it is; read back from a file it is not.
func TestFreshness(t *testing.T) {
	h := newTestHost(t)
	nonce := testNonce(3)
	trust := EvidenceOptions{SimRoot: h.sim.Root()}
	withNonce := EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce}
	archived := EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce, Archived: true}
	for _, tc := range []struct {
		name   string
		ev     Evidence
		opts   EvidenceOptions
		fresh  bool
		nonce  string // the start of the nonce line
		strict bool   // whether Strict, with a pinned policy, passes
	}{
		{"boot quote, no nonce", h.boot(t), trust, false, "warn nonce: none, so not fresh", false},
		{"fresh boot evidence", h.freshBoot(t, nonce), withNonce, true, "ok   nonce: the evidence answers the fresh nonce this client sent", true},
		{"fresh boot evidence of another client", h.freshBoot(t, nonce), trust, false, "warn nonce: the evidence answers nonce " + hex.EncodeToString(nonce) + ", which this client did not send", false},
		{"saved fresh boot evidence", h.freshBoot(t, nonce), archived, false, "warn nonce: the evidence answers nonce " + hex.EncodeToString(nonce) + ", saved with it, so not fresh", false},
		{"pipeline evidence", h.pipeline(t, testManifest, nonce), EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, ExpectManifest: testManifest}, true, "ok   nonce: ", true},
		{"saved pipeline evidence", h.pipeline(t, testManifest, nonce), EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, ExpectManifest: testManifest, Archived: true}, false, "warn nonce: ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustVerify(t, tc.ev, pinnedPolicy(), tc.opts)
			if !r.OK() || r.Fresh != tc.fresh || !strings.Contains(r.String(), "\n"+tc.nonce) {
				t.Fatalf("ok %t, fresh %t (want %t), want a line %q:\n%s", r.OK(), r.Fresh, tc.fresh, tc.nonce, r)
			}
			strict := tc.opts
			strict.Strict = true
			r = mustVerify(t, tc.ev, pinnedPolicy(), strict)
			if r.OK() != tc.strict {
				t.Fatalf("strict: ok %t, want %t:\n%s", r.OK(), tc.strict, r)
			}
			if !tc.strict && !strings.Contains(r.String(), "FAIL strict: warnings: nonce") {
				t.Errorf("strict does not name the nonce:\n%s", r)
			}
		})
	}
}

// Probe 9: a policy that pins what the host measures of itself, but not the boot chain
// that measured it, gets a warning: OK, but not strict.
func TestSelfMeasurementWarning(t *testing.T) {
	h := newTestHost(t)
	nonce := testNonce(4)
	ev := h.freshBoot(t, nonce)
	full := pinnedPolicy()
	for _, tc := range []struct {
		name   string
		change func(p *Policy)
		line   string
	}{
		{"boot chain pinned", func(*Policy) {}, "ok   self-measurement: the policy pins host_binary and models"},
		{"no RTMR1 and RTMR2", func(p *Policy) { p.RTMR1, p.RTMR2 = nil, nil }, "warn self-measurement: the policy pins host_binary and models, which the host measures of itself into RTMR3, but not rtmr1, rtmr2"},
		{"only the host binary, no MRTD", func(p *Policy) { p.Models, p.MRTD = nil, nil }, "warn self-measurement: the policy pins host_binary, which the host measures of itself into RTMR3, but not mrtd"},
		{"only the models, nothing of the boot", func(p *Policy) { p.HostBinary, p.MRTD, p.RTMR1, p.RTMR2 = nil, nil, nil, nil }, "warn self-measurement: the policy pins models, which the host measures of itself into RTMR3, but not mrtd, rtmr1, rtmr2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := full
			tc.change(&p)
			r := mustVerify(t, ev, p, EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce})
			if !r.OK() || !strings.Contains(r.String(), tc.line) {
				t.Fatalf("want an OK report with %q:\n%s", tc.line, r)
			}
		})
	}
	p := full
	p.RTMR1 = nil
	r := mustVerify(t, ev, p, EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce, Strict: true})
	if r.OK() || !strings.Contains(r.String(), "FAIL strict: not pinned or not checked: RTMR1; warnings: self-measurement") {
		t.Errorf("strict accepts a policy that trusts the host's own measurement:\n%s", r)
	}
	if r := mustVerify(t, ev, Policy{}, EvidenceOptions{SimRoot: h.sim.Root()}); strings.Contains(r.String(), "self-measurement") {
		t.Errorf("a policy that pins nothing of the host gets a self-measurement line:\n%s", r)
	}
}

// Strict fails unless every measurement is pinned, every expectation given, nothing
// warned and the evidence fresh; it names what is open.
func TestStrict(t *testing.T) {
	h := newTestHost(t)
	nonce := testNonce(5)
	strict := EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce, Strict: true}
	r := mustVerify(t, h.freshBoot(t, nonce), pinnedPolicy(), strict)
	if !r.OK() || !r.Strict || !strings.HasSuffix(r.String(), "ok   strict: every measurement is pinned by the policy, every option was checked, no warning, and the evidence is fresh\n") {
		t.Fatalf("a pinned policy on fresh evidence fails strict:\n%s", r)
	}
	r = mustVerify(t, h.freshBoot(t, nonce), Policy{}, strict)
	want := "FAIL strict: not pinned or not checked: " + strings.Join(measurementLines, ", ")
	if r.OK() || !strings.Contains(r.String(), want+"\n") {
		t.Fatalf("an open policy under strict: want %q:\n%s", want, r)
	}
	// Pipeline evidence: the modules alone pin code, not behaviour.
	popts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, ExpectModules: []string{testModuleA}, Strict: true}
	r = mustVerify(t, h.pipeline(t, testManifest, nonce), pinnedPolicy(), popts)
	if r.OK() || !strings.Contains(r.String(), "FAIL strict: not pinned or not checked: expected manifest\n") {
		t.Fatalf("strict pipeline evidence without an expected manifest:\n%s", r)
	}
	popts.ExpectManifest = testManifest
	if r = mustVerify(t, h.pipeline(t, testManifest, nonce), pinnedPolicy(), popts); !r.OK() {
		t.Fatalf("strict pipeline evidence with its manifest expected:\n%s", r)
	}
	// A quote that does not verify fails strict too, after the rest.
	bad := h.freshBoot(t, nonce)
	bad.Quote = bad.Quote[:100]
	if r = mustVerify(t, bad, pinnedPolicy(), strict); r.Checks[len(r.Checks)-1].Name != "strict" || r.OK() {
		t.Fatalf("strict is not the last check of a failed quote:\n%s", r)
	}
}

// The policy written from verified evidence pins everything: the same host passes
// strict under it, and a host that differs in one measurement fails.
func TestPinningPolicy(t *testing.T) {
	h := newTestHost(t)
	nonce := testNonce(6)
	trust := EvidenceOptions{SimRoot: h.sim.Root(), Nonce: nonce}
	r := mustVerify(t, h.freshBoot(t, nonce), Policy{}, trust)
	p, err := r.PinningPolicy()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(pinnedPolicy())
	if string(b) != string(want) {
		t.Errorf("pinning policy\n%s\nwant\n%s", b, want)
	}
	parsed, err := ParsePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	strict := trust
	strict.Strict = true
	if r := mustVerify(t, h.freshBoot(t, nonce), *parsed, strict); !r.OK() {
		t.Fatalf("the host fails strict under the policy written from it:\n%s", r)
	}
	events := bootEvents()
	events[0] = HostBinaryEvent([32]byte{9})
	other := newTestHostWith(t, events)
	if r := mustVerify(t, other.freshBoot(t, nonce), *parsed, EvidenceOptions{SimRoot: other.sim.Root(), Nonce: nonce}); !slices.Equal(failed(r), []string{"host binary"}) {
		t.Fatalf("another host binary under the written policy fails %q:\n%s", failed(r), r)
	}

	// A host that does not bill: its policy pins no settlement key, and it passes strict.
	unbilled := newTestHostWith(t, slices.DeleteFunc(bootEvents(), func(e Event) bool {
		return e.Type == EventSettlementKey || e.Type == EventSettlementKeyOrigin
	}))
	uopts := EvidenceOptions{SimRoot: unbilled.sim.Root(), Nonce: nonce}
	up, err := mustVerify(t, unbilled.freshBoot(t, nonce), Policy{}, uopts).PinningPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if up.SettlementKeys != nil || up.SettlementKeyOrigins != nil {
		t.Errorf("pins a settlement key the host does not measure: %+v", up)
	}
	uopts.Strict = true
	if r := mustVerify(t, unbilled.freshBoot(t, nonce), *up, uopts); !r.OK() || !strings.Contains(r.String(), "ok   settlement key: none: the host does not bill") {
		t.Fatalf("a host that does not bill fails strict under its own policy:\n%s", r)
	}

	// Never from evidence that failed.
	failedReport := mustVerify(t, h.freshBoot(t, nonce), Policy{MRTD: []string{strings.Repeat("00", 48)}}, trust)
	if _, err := failedReport.PinningPolicy(); err == nil {
		t.Error("a policy written from evidence that failed")
	}
}

// TestReportJSON pins the JSON report's shape: every member the reviewer's page reads.
func TestReportJSON(t *testing.T) {
	r := &Report{}
	r.pass("a", "fine")
	r.skip("b", "open")
	r.add("warn", "c", "v", "careful")
	r.fail("d", "bad %d", 1)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"format":"cocoon-verify-report/v1","ok":false,"strict":false,"fresh":false,"td":null,"events":null,"manifest":null,"checks":[` +
		`{"name":"a","verdict":"ok","detail":"fine"},{"name":"b","verdict":"skip","detail":"open"},` +
		`{"name":"c","verdict":"warn","detail":"careful","value":"v"},{"name":"d","verdict":"fail","detail":"bad 1"}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}

	h := newTestHost(t)
	nonce := testNonce(7)
	now := time.Now().Truncate(time.Second)
	r = mustVerify(t, h.pipeline(t, testManifest, nonce), pinnedPolicy(), EvidenceOptions{SimRoot: h.sim.Root(),
		PipelineID: testPipelineID(), Nonce: nonce, ExpectManifest: testManifest, Strict: true, Now: now})
	if b, err = json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Format    string              `json:"format"`
		CheckedAt string              `json:"checked_at"`
		OK        bool                `json:"ok"`
		Strict    bool                `json:"strict"`
		Fresh     bool                `json:"fresh"`
		Evidence  map[string]string   `json:"evidence"`
		TD        map[string]any      `json:"td"`
		Events    []map[string]string `json:"events"`
		Manifest  json.RawMessage     `json:"manifest"`
		Checks    []map[string]string `json:"checks"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields() // every member is one the page reads
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Format != ReportFormat || !got.OK || !got.Strict || !got.Fresh || got.CheckedAt != now.UTC().Format(time.RFC3339) {
		t.Errorf("header members: %s", b)
	}
	wantEvidence := map[string]string{"kind": "pipeline", "mode": "sim", "host_key": hex.EncodeToString(h.pub()),
		"tls_key": hex.EncodeToString(h.tlsSPKI), "nonce": hex.EncodeToString(nonce), "pipeline_id": testPipelineID()}
	if !mapsEqual(got.Evidence, wantEvidence) {
		t.Errorf("evidence %v, want %v", got.Evidence, wantEvidence)
	}
	if got.TD["mrtd"] != hex.EncodeToString(SimMRTD[:]) || got.TD["mr_seam"] != hex.EncodeToString(simMRSEAM[:]) ||
		got.TD["td_attributes"] != "0000000000000000" || got.TD["debug"] != false || got.TD["tcb_status"] != nil || len(got.TD) != 13 {
		t.Errorf("td %v", got.TD)
	}
	if len(got.Events) != len(bootEvents()) {
		t.Fatalf("events %v", got.Events)
	}
	for i, e := range bootEvents() {
		if got.Events[i]["type"] != string(e.Type) || got.Events[i]["value"] != e.Value() {
			t.Errorf("event %d: %v, want %s", i, got.Events[i], e)
		}
	}
	if string(got.Manifest) != string(testManifest) {
		t.Errorf("manifest %s", got.Manifest)
	}
	for _, c := range got.Checks {
		if !slices.Contains([]string{"ok", "skip", "warn", "fail"}, c["verdict"]) || c["name"] == "" || c["detail"] == "" {
			t.Errorf("check %v", c)
		}
		if c["name"] == "MRTD" && c["value"] != hex.EncodeToString(SimMRTD[:]) {
			t.Errorf("the MRTD check's value is %q", c["value"])
		}
	}
	if last := got.Checks[len(got.Checks)-1]; last["name"] != "strict" || last["verdict"] != "ok" {
		t.Errorf("last check %v", last)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBackendLocation(t *testing.T) {
	for _, tc := range []struct {
		backend string
		inside  bool
	}{
		{"embedded", true},
		{"plugin", true},
		{"openai http://127.0.0.1:8000/v1", true},
		{"openai http://127.3.4.5:8000/v1", true},
		{"openai https://localhost:8443/v1", true},
		{"openai http://[::1]:8000/v1", true},
		{"openai http://[::ffff:127.0.0.1]:8000/v1", true},
		{"openai unix:///run/vllm.sock", true},
		{"openai http://203.0.113.7:8000/v1", false},
		{"openai http://10.0.0.2:8000/v1", false},
		{"openai http://gpu.internal:8000/v1", false},
		{"openai http://localhost.attacker.example/v1", false},
		{"openai http://0.0.0.0:8000/v1", false},
		{"openai http://127.1:8000/v1", false},
		{"openai unix://host/run/x.sock", false},
		{"openai ftp://127.0.0.1/", false},
		{"openai", false},
		{"grpc 127.0.0.1:50051", false},
		{"embedded ", false},
	} {
		if where, inside := backendLocation(tc.backend); inside != tc.inside {
			t.Errorf("%q: inside %t (%s), want %t", tc.backend, inside, where, tc.inside)
		}
	}
}
