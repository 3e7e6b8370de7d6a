package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/manifest"
)

// fixture is a simulated host's boot and pipeline evidence, as a host serves them.
type fixture struct {
	root              string // the simulator root's PEM
	boot, pipeline    []byte // evidence JSON
	freshBoot         []byte // boot evidence quoted for nonce
	pipelineID, nonce string
	hostKey           string
}

// uploaded is the fixture pipeline's manifest as a client uploads it: whitespace,
// defaults left out. Its evidence carries the canonical form.
var uploaded = `{"abi_version": 1, "model": "m",
  "pre": [{"module": "sha256:` + strings.Repeat("a1", 32) + `", "config": {"mask": "emails"}}]}`

// canonical returns the canonical manifest of a manifest as uploaded.
func canonical(t testing.TB, uploaded string) []byte {
	t.Helper()
	m, err := manifest.Parse([]byte(uploaded))
	if err != nil {
		t.Fatal(err)
	}
	return m.Canonical()
}

// newFixture makes a simulated host's evidence as attest.Host serves it, without
// attest.Boot, which measures its own executable: the fixture also runs where there is
// none, in the browser's engine (see BenchmarkVerify).
func newFixture(t testing.TB) fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := attest.NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	log := attest.NewLog(sim.RTMR3())
	for _, e := range []attest.Event{attest.HostBinaryEvent(sha256.Sum256([]byte("cocoon-host"))), attest.ABIVersionEvent(1),
		attest.SandboxPolicyEvent(sha256.Sum256([]byte("sandbox"))), attest.BackendEvent("embedded"), attest.ModelEvent("m"), attest.SealingEvent(attest.SealingSim), attest.SealEvent()} {
		if err := log.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	events, err := log.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _ := ed25519.GenerateKey(nil)
	tlsKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tlsSPKI, _ := x509.MarshalPKIXPublicKey(&tlsKey.PublicKey)
	quote := func(rd [64]byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		q, err := sim.Quote(ctx, rd)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	bootEv := attest.Evidence{Mode: attest.ModeSim, EventLog: events, HostKey: hostKey, TLSKey: tlsSPKI,
		Quote: quote(attest.BootReportData(hostKey, tlsSPKI, log.Digest()))}
	nonce := []byte(strings.Repeat("n", 32))
	freshBootEv := bootEv
	freshBootEv.Nonce = nonce
	freshBootEv.Quote = quote(attest.FreshBootReportData(nonce, hostKey, tlsSPKI, log.Digest()))
	m := canonical(t, uploaded)
	id := attest.ManifestHash(m)
	pipelineEv := bootEv
	pipelineEv.PipelineID, pipelineEv.Manifest, pipelineEv.Nonce = hex.EncodeToString(id[:]), m, nonce
	pipelineEv.Quote = quote(attest.PipelineReportData(nonce, id, hostKey))
	root, err := os.ReadFile(filepath.Join(dir, attest.SimRootFile))
	if err != nil {
		t.Fatal(err)
	}
	boot, _ := json.Marshal(bootEv)
	freshBoot, _ := json.Marshal(freshBootEv)
	pipeline, _ := json.Marshal(pipelineEv)
	return fixture{root: string(root), boot: boot, freshBoot: freshBoot, pipeline: pipeline, pipelineID: pipelineEv.PipelineID,
		nonce: hex.EncodeToString(nonce), hostKey: hex.EncodeToString(hostKey)}
}

// pinningPolicy returns a policy that pins every measurement of the fixture's evidence
// and trusts its root, as cocoon verify --write-policy writes it.
func (f fixture) pinningPolicy(t testing.TB) json.RawMessage {
	t.Helper()
	ev, err := attest.ParseEvidence(f.freshBoot)
	if err != nil {
		t.Fatal(err)
	}
	root, err := attest.ParseCertificatePEM([]byte(f.root))
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString(f.nonce)
	r, err := attest.VerifyEvidence(*ev, attest.Policy{}, attest.EvidenceOptions{SimRoot: root, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.PinningPolicy()
	if err != nil {
		t.Fatal(err)
	}
	p.TrustSimRoot = f.root
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// result is Verify's answer, decoded.
type result struct {
	Report *struct {
		Format string `json:"format"`
		OK     bool   `json:"ok"`
		Strict bool   `json:"strict"`
		Fresh  bool   `json:"fresh"`
		Checks []struct {
			Name    string `json:"name"`
			Verdict string `json:"verdict"`
		} `json:"checks"`
	} `json:"report"`
	Error   string `json:"error"`
	ErrorIn string `json:"error_in"`
}

func decode(t testing.TB, b []byte) result {
	t.Helper()
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("Verify returned %q: %v", b, err)
	}
	if (r.Report == nil) == (r.Error == "") {
		t.Fatalf("Verify returned %s: want exactly one of report and error", b)
	}
	return r
}

func (r result) verdict(name string) string {
	for _, c := range r.Report.Checks {
		if c.Name == name {
			return c.Verdict
		}
	}
	return ""
}

// TestVerify runs the page's verifier on a simulated host's evidence with what a
// reviewer may give: the evidence passes only with its root given, boot evidence is
// fresh only when it answers the nonce the page sent and fails when it answers none,
// pipeline evidence passes only with the nonce the page sent and the boot evidence's
// key, and only as the manifest expected (canonicalized as the host canonicalizes it),
// strict mode fails whatever the policy leaves open, and options the verifier cannot
// honour are refused, not ignored.
func TestVerify(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	rootPolicy, _ := json.Marshal(map[string]string{"trust_sim_root": f.root})
	pipelineOpts := func(nonce, hostKey string) map[string]any {
		return map[string]any{"trust_sim_root": f.root, "pipeline_id": f.pipelineID, "nonce": nonce, "host_key": hostKey}
	}
	expecting := func(m any) map[string]any {
		o := pipelineOpts(f.nonce, f.hostKey)
		o["expect_manifest"] = m
		return o
	}
	// disabled is the fixture's manifest with the redactor's config changed to mask
	// nothing: the same module hashes, another behaviour.
	disabled := json.RawMessage(strings.Replace(uploaded, `"emails"`, `"nothing"`, 1))
	pinning := f.pinningPolicy(t)
	for _, tc := range []struct {
		name     string
		evidence []byte
		options  any
		ok       bool
		failed   string // a check that must fail
		errorIn  string // an error instead of a report
		says     string // what the error must say
		strict   bool   // the report must say strict mode
		fresh    bool   // the report must say fresh
	}{
		{name: "boot, root given", evidence: f.boot, options: map[string]any{"trust_sim_root": f.root}, ok: true},
		{name: "boot, root in the policy", evidence: f.boot, options: map[string]any{"policy": json.RawMessage(rootPolicy)}, ok: true},
		{name: "boot, nothing trusted", evidence: f.boot, options: map[string]any{}, failed: "evidence mode"},
		{name: "boot, another simulator's root", evidence: f.boot, options: map[string]any{"trust_sim_root": other.root}, failed: "quote signature chain"},
		{name: "boot, a pinned sealing it lacks", evidence: f.boot, options: map[string]any{"trust_sim_root": f.root, "policy": map[string]any{"sealing": []string{"file"}}}, failed: "sealing"},
		{name: "pipeline", evidence: f.pipeline, options: pipelineOpts(f.nonce, f.hostKey), ok: true},
		{name: "pipeline, another nonce", evidence: f.pipeline, options: pipelineOpts(strings.Repeat("ab", 32), f.hostKey), failed: "nonce"},
		{name: "pipeline, another host's key", evidence: f.pipeline, options: pipelineOpts(f.nonce, other.hostKey), failed: "host key"},
		{name: "boot, fresh", evidence: f.freshBoot, options: map[string]any{"trust_sim_root": f.root, "nonce": f.nonce}, ok: true, fresh: true},
		// A host, or a relay, that drops the page's nonce and answers with the quote
		// taken at boot: a replay the page must show failed, not merely "not fresh".
		{name: "boot, the page's nonce not answered", evidence: f.boot, options: map[string]any{"trust_sim_root": f.root, "nonce": f.nonce}, failed: "nonce"},
		{name: "boot, another nonce answered", evidence: f.freshBoot, options: map[string]any{"trust_sim_root": f.root, "nonce": strings.Repeat("ab", 32)}, failed: "nonce"},
		{name: "boot, no nonce sent", evidence: f.boot, options: map[string]any{"trust_sim_root": f.root}, ok: true},
		{name: "boot, strict, open policy", evidence: f.freshBoot, options: map[string]any{"trust_sim_root": f.root, "nonce": f.nonce, "strict": true}, failed: "strict", strict: true},
		{name: "boot, strict, pinning policy", evidence: f.freshBoot, options: map[string]any{"policy": pinning, "nonce": f.nonce, "strict": true}, ok: true, strict: true, fresh: true},
		{name: "boot, strict, not fresh", evidence: f.boot, options: map[string]any{"policy": pinning, "strict": true}, failed: "strict", strict: true},
		{name: "pipeline, manifest expected as uploaded", evidence: f.pipeline, options: expecting(json.RawMessage(uploaded)), ok: true},
		{name: "pipeline, manifest expected in canonical form", evidence: f.pipeline, options: expecting(json.RawMessage(canonical(t, uploaded))), ok: true},
		{name: "pipeline, a disabling config expected", evidence: f.pipeline, options: expecting(disabled), failed: "expected manifest"},
		{name: "pipeline, expected manifest null", evidence: f.pipeline, options: expecting(nil), ok: true},
		{name: "expected manifest invalid", evidence: f.pipeline, options: expecting(map[string]any{"abi_version": 1, "model": "m", "pre": []any{map[string]string{"module": "sha256:00"}}}), errorIn: InOptions, says: "expected manifest: pre module 1"},
		{name: "expected manifest unknown member", evidence: f.pipeline, options: expecting(map[string]any{"abi_version": 1, "model": "m", "stages": 2}), errorIn: InOptions, says: "unknown member"},
		{name: "expected manifest without a pipeline", evidence: f.boot, options: map[string]any{"trust_sim_root": f.root, "expect_manifest": json.RawMessage(uploaded)}, errorIn: InOptions},
		{name: "strict not a boolean", evidence: f.boot, options: map[string]any{"strict": "yes"}, errorIn: InOptions},
		{name: "pipeline taken for boot evidence", evidence: f.pipeline, options: map[string]any{"trust_sim_root": f.root}, failed: "evidence kind"},
		{name: "expected module missing", evidence: f.pipeline, options: map[string]any{"trust_sim_root": f.root, "pipeline_id": f.pipelineID,
			"nonce": f.nonce, "expect_modules": []string{"sha256:" + strings.Repeat("b2", 32)}}, failed: "expected modules"},
		{name: "policy root as a path", evidence: f.boot, options: map[string]any{"policy": map[string]string{"trust_sim_root": "sim-root.pem"}}, errorIn: InOptions},
		{name: "policy unknown member", evidence: f.boot, options: map[string]any{"policy": map[string]any{"mrtdd": []string{}}}, errorIn: InOptions},
		{name: "unknown option", evidence: f.boot, options: map[string]any{"trust_sim_roots": f.root}, errorIn: InOptions},
		{name: "options trailing data", evidence: f.boot, options: json.RawMessage(`{} {}`), errorIn: InOptions},
		{name: "options too large", evidence: f.boot, options: map[string]any{"trust_sim_root": strings.Repeat(" ", MaxOptionsBytes)}, errorIn: InOptions},
		{name: "root not PEM", evidence: f.boot, options: map[string]any{"trust_sim_root": "root"}, errorIn: InOptions},
		{name: "nonce not hex", evidence: f.pipeline, options: pipelineOpts("zz", f.hostKey), errorIn: InOptions},
		{name: "nonce too short", evidence: f.boot, options: map[string]any{"nonce": "abcd"}, errorIn: InOptions},
		{name: "host key too short", evidence: f.pipeline, options: pipelineOpts(f.nonce, "abcd"), errorIn: InOptions},
		{name: "collateral not collateral", evidence: f.boot, options: map[string]any{"collateral": []int{1}}, errorIn: InOptions},
		{name: "evidence not JSON", evidence: []byte("<html>"), options: map[string]any{}, errorIn: InEvidence},
		{name: "evidence with an unknown member", evidence: append(f.boot[:len(f.boot)-1:len(f.boot)-1], []byte(`,"extra":1}`)...), options: map[string]any{}, errorIn: InEvidence},
	} {
		t.Run(tc.name, func(t *testing.T) {
			options, ok := tc.options.(json.RawMessage)
			if !ok {
				options, _ = json.Marshal(tc.options)
			}
			r := decode(t, Verify(tc.evidence, options))
			switch {
			case tc.errorIn != "":
				if r.ErrorIn != tc.errorIn || !strings.Contains(r.Error, tc.says) {
					t.Fatalf("got %+v, want an error in the %s saying %q", r, tc.errorIn, tc.says)
				}
			case r.Report == nil:
				t.Fatalf("error %q in the %s", r.Error, r.ErrorIn)
			case r.Report.Format != attest.ReportFormat || r.Report.OK != tc.ok:
				t.Fatalf("report %+v, want ok %t", r.Report, tc.ok)
			case tc.failed != "" && r.verdict(tc.failed) != "fail":
				t.Fatalf("check %q: %q, want fail in %+v", tc.failed, r.verdict(tc.failed), r.Report.Checks)
			case r.Report.Strict != tc.strict || tc.fresh && !r.Report.Fresh:
				t.Fatalf("report strict %t fresh %t, want strict %t fresh %t", r.Report.Strict, r.Report.Fresh, tc.strict, tc.fresh)
			}
		})
	}
}

// FuzzVerify feeds the page's verifier what a host (the evidence) and a page (the
// options) may send: it must answer every input with exactly one of a report and an
// error, and never panic (a panic would stop the verifier for the rest of the page's
// life).
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	block, _ := pem.Decode([]byte(fx.root))
	options, _ := json.Marshal(map[string]any{"trust_sim_root": fx.root})
	f.Add(fx.boot, options)
	f.Add(fx.pipeline, []byte(`{"pipeline_id":"`+fx.pipelineID+`","nonce":"`+fx.nonce+`","host_key":"`+fx.hostKey+`"}`))
	f.Add([]byte(`{"mode":"sim","quote":"AA==","event_log":{"events":[]}}`), []byte(`{"policy":{"mrtd":["00"]},"collateral":{}}`))
	f.Add(block.Bytes, []byte(`{"trust_sim_root":"-----BEGIN CERTIFICATE-----"}`))
	f.Fuzz(func(t *testing.T, evidence, options []byte) {
		decode(t, Verify(evidence, options))
	})
}

// BenchmarkVerify measures what the page's verifier costs beyond attest.VerifyEvidence
// (decoding the options and evidence, encoding the report): "verifier" against
// "attest", the verification alone, in the same run. Run in the browser's engine (V8,
// through Node.js) with GOOS=js, it measures what verifying costs in a page; RATIONALE.md
// has the command.
func BenchmarkVerify(b *testing.B) {
	fx := newFixture(b)
	options, _ := json.Marshal(map[string]any{"trust_sim_root": fx.root, "pipeline_id": fx.pipelineID, "nonce": fx.nonce, "host_key": fx.hostKey})
	b.Run("verifier", func(b *testing.B) {
		for b.Loop() {
			Verify(fx.pipeline, options)
		}
	})
	b.Run("attest", func(b *testing.B) {
		p, opts, err := parseOptions(options)
		if err != nil {
			b.Fatal(err)
		}
		ev, err := attest.ParseEvidence(fx.pipeline)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if r, err := attest.VerifyEvidence(*ev, *p, opts); err != nil || !r.OK() {
				b.Fatal(err, r)
			}
		}
	})
}

// TestVerifyKeys: the keys a client pins come with a report that passed, from the very
// evidence verified, and never with one that failed.
func TestVerifyKeys(t *testing.T) {
	f := newFixture(t)
	other := newFixture(t)
	for _, tc := range []struct {
		name string
		root string
		ok   bool
	}{{"verified", f.root, true}, {"another root", other.root, false}} {
		t.Run(tc.name, func(t *testing.T) {
			options, _ := json.Marshal(map[string]string{"trust_sim_root": tc.root})
			var r struct {
				Report struct {
					OK bool `json:"ok"`
				} `json:"report"`
				Keys *Keys `json:"keys"`
			}
			if err := json.Unmarshal(Verify(f.boot, options), &r); err != nil {
				t.Fatal(err)
			}
			if r.Report.OK != tc.ok || (r.Keys != nil) != tc.ok {
				t.Fatalf("ok %v, keys %v", r.Report.OK, r.Keys)
			}
			if tc.ok && hex.EncodeToString(r.Keys.HostKey) != f.hostKey {
				t.Fatalf("host key %x, want the evidence's %s", r.Keys.HostKey, f.hostKey)
			}
		})
	}
}
