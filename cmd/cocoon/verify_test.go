package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
)

// attestHost serves evidence as a host does: a Sim whose RTMR3 carries a sealed event
// log, a host key and a TLS key, boot evidence at /v1/attestation (over the client's
// nonce when it sends one) and pipeline evidence over the client's nonce at
// /v1/pipelines/{id}/attestation. tamper and tamperBoot, when set, may change the
// pipeline or the boot evidence before it is served; pipelineRequests counts the
// requests for pipeline evidence.
type attestHost struct {
	sim              *attest.Sim
	log              *attest.Log
	hostKey          ed25519.PublicKey
	tlsSPKI          []byte
	manifest         *host.Manifest
	rootPath         string
	tamper           func(ev *attest.Evidence)
	tamperBoot       func(ev *attest.Evidence)
	pipelineRequests int
}

var (
	moduleA = "sha256:" + strings.Repeat("a1", 32)
	moduleB = "sha256:" + strings.Repeat("b2", 32)
)

func newAttestHost(t *testing.T) (*attestHost, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := attest.NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &attestHost{sim: s, log: attest.NewLog(s.RTMR3()), rootPath: filepath.Join(dir, attest.SimRootFile)}
	for _, e := range []attest.Event{
		attest.HostBinaryEvent(sha256.Sum256([]byte("cocoon-host"))),
		attest.ABIVersionEvent(1),
		attest.SandboxPolicyEvent(sha256.Sum256([]byte("sandbox"))),
		attest.BackendEvent("embedded"),
		attest.ModelEvent("sha256:" + strings.Repeat("cc", 32)),
		attest.SealingEvent(attest.SealingSim),
		attest.SealEvent(),
	} {
		if err := h.log.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	h.hostKey, _, _ = ed25519.GenerateKey(nil)
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if h.tlsSPKI, err = x509.MarshalPKIXPublicKey(&tlsKey.PublicKey); err != nil {
		t.Fatal(err)
	}
	h.manifest, err = host.ParseManifest([]byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + moduleA + `"}],"post":[{"module":"` + moduleB + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts.URL
}

func (h *attestHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	logJSON, err := h.log.MarshalJSON()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	ev := attest.Evidence{Mode: attest.ModeSim, EventLog: logJSON, HostKey: h.hostKey, TLSKey: h.tlsSPKI}
	var rd [64]byte
	switch r.URL.Path {
	case "/v1/attestation":
		rd, err = attest.BootReportData(h.hostKey, h.tlsSPKI, h.log.Digest())
		if r.URL.Query().Has("nonce") {
			if ev.Nonce, err = hex.DecodeString(r.URL.Query().Get("nonce")); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			rd, err = attest.FreshBootReportData(ev.Nonce, h.hostKey, h.tlsSPKI, h.log.Digest())
		}
	case "/v1/pipelines/" + h.manifest.ID() + "/attestation":
		h.pipelineRequests++
		if ev.Nonce, err = hex.DecodeString(r.URL.Query().Get("nonce")); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ev.PipelineID, ev.Manifest = h.manifest.ID(), h.manifest.Canonical()
		rd, err = attest.PipelineReportData(ev.Nonce, attest.ManifestHash(ev.Manifest), h.hostKey)
	default:
		http.Error(w, `{"error":{"message":"no such pipeline","code":"not_found"}}`, 404)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if ev.Quote, err = h.sim.Quote(r.Context(), rd); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	if h.tamper != nil && ev.PipelineID != "" {
		h.tamper(&ev)
	}
	if h.tamperBoot != nil && ev.PipelineID == "" {
		h.tamperBoot(&ev)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ev)
}

func TestVerify(t *testing.T) {
	h, url := newAttestHost(t)
	id := h.manifest.ID()
	otherRoot := filepath.Join(t.TempDir(), "other")
	if _, err := attest.NewSim(otherRoot); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile := func(name, content string) string { return writeTestFile(t, dir, name, content) }
	rootPEM, err := os.ReadFile(h.rootPath)
	if err != nil {
		t.Fatal(err)
	}
	pinned := writeFile("pinned.json", `{"mrtd":["`+hex.EncodeToString(attest.SimMRTD[:])+`"],"abi_version":1,"trust_sim_root":`+jsonString(string(rootPEM))+`}`)
	wrongMRTD := writeFile("wrong.json", `{"mrtd":["`+strings.Repeat("00", 48)+`"]}`)
	badPolicy := writeFile("bad.json", `{"mrtd":"not a list"}`)
	upToDate := writeFile("uptodate.json", `{"min_tcb_status":"UpToDate"}`)
	collateral := writeFile("collateral.json", `{"https://api.trustedservices.intel.com/sgx/certification/v4/qe/identity":{"status":200,"body":""}}`)
	badCollateral := writeFile("badcollateral.json", `{"u":{"status":"200"}}`)
	saved := filepath.Join(t.TempDir(), "saved-collateral.json")

	// An old quote, over a nonce the client never sent, for the replay case.
	oldNonce := bytes.Repeat([]byte{7}, 32)
	oldRD, err := attest.PipelineReportData(oldNonce, attest.ManifestHash(h.manifest.Canonical()), h.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	oldQuote, err := h.sim.Quote(context.Background(), oldRD)
	if err != nil {
		t.Fatal(err)
	}
	otherManifest, err := host.ParseManifest([]byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + moduleA + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}

	trust := []string{"--host", url, "--trust-sim-root", h.rootPath}
	tests := []struct {
		name       string
		args       []string
		tamper     func(ev *attest.Evidence)
		code       int
		stdoutPart string
		stderrPart string
	}{
		{"boot evidence, sim trusted", trust, nil, 0, "ok   quote signature chain: ", ""},
		{"sim evidence without trust", []string{"--host", url}, nil, 1, "FAIL evidence mode: simulated evidence, refused", "verification failed"},
		{"another sim root", []string{"--host", url, "--trust-sim-root", filepath.Join(otherRoot, attest.SimRootFile)}, nil, 1,
			"FAIL quote signature chain: not signed by the given simulator root, nor by Intel's: quote: certificate chain does not lead to a trusted root", ""},
		{"pipeline", append(trust, "--pipeline", id, "--expect-module", moduleA, "--expect-module", moduleB), nil, 0,
			"ok   nonce: the evidence answers the fresh nonce", ""},
		{"pinned policy with its sim root", []string{"--host", url, "--policy", pinned, "--pipeline", id}, nil, 0, "ok   MRTD: ", ""},
		{"open policy says so", trust, nil, 0, "skip RTMR1: any: the policy does not pin", ""},
		{"MRTD outside the policy", append(trust, "--policy", wrongMRTD), nil, 1, "FAIL MRTD: ", ""},
		{"module not expected", append(trust, "--pipeline", id, "--expect-module", "sha256:"+strings.Repeat("dd", 32)), nil, 1,
			"FAIL expected modules: the pipeline does not run sha256:dddd", ""},
		{"replayed old quote", append(trust, "--pipeline", id), func(ev *attest.Evidence) { ev.Quote, ev.Nonce = oldQuote, oldNonce }, 1,
			"FAIL nonce: the evidence answers nonce 0707", ""},
		{"old quote with the fresh nonce pasted in", append(trust, "--pipeline", id), func(ev *attest.Evidence) { ev.Quote = oldQuote }, 1,
			"FAIL REPORTDATA binding: the quote's REPORTDATA does not bind this client's nonce", ""},
		{"manifest of another pipeline", append(trust, "--pipeline", id), func(ev *attest.Evidence) { ev.Manifest = otherManifest.Canonical() }, 1,
			"FAIL pipeline id: the manifest served hashes to " + otherManifest.ID(), ""},
		{"another host key", append(trust, "--pipeline", id), func(ev *attest.Evidence) {
			ev.HostKey, _, _ = ed25519.GenerateKey(nil)
		}, 1, "FAIL host key: ", ""},
		{"garbage quote", append(trust, "--pipeline", id), func(ev *attest.Evidence) { ev.Quote = []byte("garbage") }, 1,
			"FAIL quote signature chain: quote: truncated", ""},
		{"unknown pipeline", append(trust, "--pipeline", strings.Repeat("ee", 32)), nil, 1, "", "the host refused (404 Not Found): no such pipeline"},
		{"collateral, sim evidence has none", append(trust, "--collateral", collateral), nil, 0,
			"skip TCB status: not evaluated: simulated evidence has no Intel collateral", ""},
		{"TCB status required of sim evidence", append(trust, "--collateral", collateral, "--policy", upToDate), nil, 1,
			"FAIL TCB status: simulated evidence has no Intel collateral, and the policy requires UpToDate", ""},
		{"unreadable collateral", append(trust, "--collateral", badCollateral), nil, 1, "", "--collateral: " + badCollateral + ": collateral: JSON string for field"},
		// Online: a sim quote chains to no Intel root, so nothing is fetched (no network
		// here) and the saved file is an empty collateral.
		{"online collateral, saved", append(trust, "--collateral", "online", "--save-collateral", saved), nil, 0,
			"skip TCB status: not evaluated: simulated evidence has no Intel collateral", ""},
		// One root, as before: the last of two silently won, so the root a reviewer
		// meant could be ignored; a second is now refused (cocoon proxy takes several).
		{"two simulator roots", append(trust, "--trust-sim-root", filepath.Join(otherRoot, attest.SimRootFile)), nil, 2, "",
			"invalid value \"" + filepath.Join(otherRoot, attest.SimRootFile) + "\" for flag --trust-sim-root: given twice: this command trusts one simulator root"},
		{"save without online", append(trust, "--collateral", collateral, "--save-collateral", saved), nil, 2, "", "--save-collateral needs --collateral online"},
		{"bad policy", append(trust, "--policy", badPolicy), nil, 1, "", `policy: JSON string for field "mrtd"`},
		{"expect without pipeline", append(trust, "--expect-module", moduleA), nil, 2, "", "--expect-module needs --pipeline"},
		{"bad expected module", append(trust, "--pipeline", id, "--expect-module", "a1"), nil, 2, "", "not a module hash"},
		{"bad pipeline id", append(trust, "--pipeline", "xyz"), nil, 2, "", "is not a pipeline id"},
		{"short nonce", append(trust, "--nonce-bytes", "8"), nil, 2, "", "--nonce-bytes 8: want 16 to 64"},
		{"unreachable host", []string{"--host", "http://127.0.0.1:1"}, nil, 1, "", "cannot reach the host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.tamper = tt.tamper
			var stdout, stderr bytes.Buffer
			code := runCommand(append([]string{"verify"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String(), tt.stdoutPart) || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr: %s\nwant stdout containing %q, stderr containing %q",
					code, tt.code, stdout.String(), stderr.String(), tt.stdoutPart, tt.stderrPart)
			}
			if tt.code == 0 && strings.Contains(stdout.String(), "FAIL") {
				t.Errorf("exit 0 with a FAIL line:\n%s", stdout.String())
			}
		})
	}
	if b, err := os.ReadFile(saved); err != nil || strings.TrimSpace(string(b)) != "{}" {
		t.Errorf("--save-collateral wrote %q, %v; want an empty collateral", b, err)
	}
}

// writeTestFile writes content to dir/name and returns the path.
func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// exampleRedactor returns the path and bytes of the example pii-redactor module.
func exampleRedactor(t *testing.T) (string, []byte) {
	t.Helper()
	path := examplePlugin(t, "pii-redactor/go/pii-redactor.wasm")
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, wasm
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ratlsHosts boots two simulated hosts under one sim root and serves, over the first
// one's RA-TLS certificates, the boot evidence of the host serve picks and an empty
// pipeline list. It returns the https URL and the root's path.
func ratlsHosts(t *testing.T, serve func(hosts []*attest.Host) *attest.Host) (string, string) {
	t.Helper()
	dir := t.TempDir()
	hosts := make([]*attest.Host, 2)
	for i := range hosts {
		sim, err := attest.NewSim(dir)
		if err != nil {
			t.Fatal(err)
		}
		if hosts[i], err = attest.Boot(context.Background(), sim, "embedded", "m"); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/attestation":
			ev := serve(hosts).BootEvidence()
			if nonce, err := hex.DecodeString(r.URL.Query().Get("nonce")); err == nil && len(nonce) > 0 {
				if ev, err = serve(hosts).FreshBootEvidence(r.Context(), nonce); err != nil {
					http.Error(w, err.Error(), 400)
					return
				}
			}
			json.NewEncoder(w).Encode(ev)
		case "/v1/pipelines":
			io.WriteString(w, `{"data":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	ts.Listener = tls.NewListener(ts.Listener, hosts[0].TLSConfig(time.Hour))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	ts.Start()
	t.Cleanup(ts.Close)
	return "https://" + ts.Listener.Addr().String(), filepath.Join(dir, attest.SimRootFile)
}

// Against an https host, the client verifies the RA-TLS certificate in the handshake:
// only with the sim root trusted, and verify checks that the evidence served is the
// certificate's.
func TestVerifyRATLS(t *testing.T) {
	first := func(hosts []*attest.Host) *attest.Host { return hosts[0] }
	url, root := ratlsHosts(t, first)
	otherURL, otherRoot := ratlsHosts(t, func(hosts []*attest.Host) *attest.Host { return hosts[1] })
	tests := []struct {
		name       string
		args       []string
		code       int
		stdoutPart string
		stderrPart string
	}{
		{"verify, sim trusted", []string{"verify", "--host", url, "--trust-sim-root", root}, 0,
			"ok   RA-TLS: the TLS handshake verified the certificate's evidence", ""},
		{"verify, sim not trusted", []string{"verify", "--host", url}, 1, "",
			"refusing the host at " + url + ": RA-TLS: the certificate's evidence does not verify: quote signature chain: "},
		{"verify, another sim root", []string{"verify", "--host", url, "--trust-sim-root", otherRoot}, 1, "",
			"quote signature chain: not signed by the given simulator root, nor by Intel's: quote: certificate chain does not lead to a trusted root"},
		{"verify, evidence served is another host's", []string{"verify", "--host", otherURL, "--trust-sim-root", otherRoot}, 1,
			"FAIL RA-TLS: the evidence served names other keys", "verification failed"},
		{"pipelines, sim trusted", []string{"pipelines", "--host", url, "--api-key", "k", "--trust-sim-root", root}, 0, "ID", ""},
		{"pipelines, sim not trusted", []string{"pipelines", "--host", url, "--api-key", "k"}, 1, "", "refusing the host at " + url},
		{"pipelines, trust over http", []string{"pipelines", "--host", "http://127.0.0.1:1", "--api-key", "k", "--trust-sim-root", root}, 2, "",
			"verify an https host in the TLS handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runCommand(tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String(), tt.stdoutPart) || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr: %s\nwant stdout containing %q, stderr containing %q",
					code, tt.code, stdout.String(), stderr.String(), tt.stdoutPart, tt.stderrPart)
			}
		})
	}
}

// The reviewer's flags of issue 11, each against the attack or mistake it stops: a
// policy written from a verified host passes --strict, an open policy or stale boot
// evidence fails it; --json reports what the text does; saved evidence verifies again
// offline, not fresh, and fails when altered; a host whose boot evidence fails is asked
// nothing more; a host that ignores the client's boot nonce fails.
func TestVerifyReviewerFlags(t *testing.T) {
	h, url := newAttestHost(t)
	id := h.manifest.ID()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	saved := filepath.Join(dir, "saved.json")
	trust := []string{"verify", "--host", url, "--trust-sim-root", h.rootPath}
	run := func(t *testing.T, wantCode int, args ...string) (stdout, stderr string) {
		t.Helper()
		code, stdout, stderr := cocoon(t, "", args...)
		if code != wantCode {
			t.Fatalf("cocoon %s: exit %d, want %d\nstdout:\n%s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
		}
		return stdout, stderr
	}
	must := func(t *testing.T, out string, parts ...string) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(out, p) {
				t.Errorf("output lacks %q:\n%s", p, out)
			}
		}
	}

	// --write-policy, then --strict with it.
	stdout, _ := run(t, 0, append(trust, "--write-policy", policy)...)
	must(t, stdout, "wrote "+policy+": a policy that pins everything this host measured")
	p, err := attest.LoadPolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.MRTD) != 1 || len(p.HostBinary) != 1 || len(p.SandboxPolicy) != 1 || len(p.Backends) != 1 || len(p.TDAttributes) != 1 || p.TrustSimRoot == "" {
		t.Errorf("the written policy does not pin everything: %+v", p)
	}
	expected := writeTestFile(t, dir, "manifest.json", string(h.manifest.Canonical()))
	strictOK, _ := run(t, 0, "verify", "--host", url, "--policy", policy, "--strict", "--expect-manifest", expected)
	must(t, strictOK, "ok   strict: every measurement is pinned")

	// Saved while verifying under strict, re-verified offline below.
	run(t, 0, "verify", "--host", url, "--policy", policy, "--pipeline", id, "--save-evidence", saved)

	h.tamperBoot = func(ev *attest.Evidence) { ev.HostKey, _, _ = ed25519.GenerateKey(nil) }
	run(t, 1, append(trust, "--write-policy", filepath.Join(dir, "not-written.json"))...)
	if _, err := os.Stat(filepath.Join(dir, "not-written.json")); !os.IsNotExist(err) {
		t.Errorf("--write-policy wrote a policy from evidence that failed: %v", err)
	}
	h.pipelineRequests = 0
	stdout, _ = run(t, 1, append(trust, "--pipeline", id)...)
	must(t, stdout, "FAIL REPORTDATA binding", "pipeline evidence of "+id+": not asked for: the host's boot evidence failed")
	if h.pipelineRequests != 0 {
		t.Errorf("%d requests for pipeline evidence after the boot evidence failed", h.pipelineRequests)
	}
	// A host that serves its boot quote whatever nonce the client sends: stale.
	h.tamperBoot = func(ev *attest.Evidence) {
		rd, err := attest.BootReportData(h.hostKey, h.tlsSPKI, h.log.Digest())
		if err != nil {
			t.Fatal(err)
		}
		ev.Nonce = nil
		if ev.Quote, err = h.sim.Quote(context.Background(), rd); err != nil {
			t.Fatal(err)
		}
	}
	stdout, _ = run(t, 1, trust...)
	must(t, stdout, "FAIL nonce: the evidence answers no nonce, not the fresh nonce")
	h.tamperBoot = nil

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"strict, open policy", append(trust, "--strict"), 1, []string{"FAIL strict: not pinned or not checked: TCB status, MRTD, RTMR0"}, "verification failed"},
		{"strict, boot evidence without a nonce", []string{"verify", "--host", url, "--policy", policy, "--strict", "--boot-nonce=false"}, 1,
			[]string{"warn nonce: none, so not fresh", "FAIL strict: "}, ""},
		{"strict, no expected pipeline", []string{"verify", "--host", url, "--policy", policy, "--strict", "--pipeline", id}, 1,
			[]string{"FAIL strict: not pinned or not checked: expected modules"}, ""},
		{"strict, modules but no manifest expected", []string{"verify", "--host", url, "--policy", policy, "--strict", "--pipeline", id, "--expect-module", moduleA}, 1,
			[]string{"FAIL strict: not pinned or not checked: expected manifest"}, ""},
		{"no boot nonce, not strict", []string{"verify", "--host", url, "--policy", policy, "--boot-nonce=false"}, 0,
			[]string{"warn nonce: "}, ""},
		{"strict with write-policy", append(trust, "--strict", "--write-policy", policy), 2, nil, "write the policy first"},
		{"saved evidence, offline", []string{"verify", "--evidence", saved, "--policy", policy}, 0,
			[]string{"boot evidence of " + url + ", fetched ", "pipeline evidence of " + id, "warn nonce: "}, ""},
		{"saved evidence, strict", []string{"verify", "--evidence", saved, "--policy", policy, "--strict"}, 1,
			[]string{"FAIL strict: "}, ""},
		{"saved evidence, another pipeline", []string{"verify", "--evidence", saved, "--policy", policy, "--pipeline", strings.Repeat("ee", 32)}, 1,
			nil, "holds no evidence of pipeline " + strings.Repeat("ee", 32)},
		{"saved evidence with a host", []string{"verify", "--evidence", saved, "--host", url}, 2, nil, "takes no --host"},
		{"saved evidence, online collateral", []string{"verify", "--evidence", saved, "--collateral", "online"}, 2, nil, "give --collateral FILE, not online"},
		{"saved evidence, missing", []string{"verify", "--evidence", filepath.Join(dir, "none.json")}, 1, nil, "--evidence: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr := run(t, tt.code, tt.args...)
			must(t, stdout, tt.stdout...)
			must(t, stderr, tt.stderr)
		})
	}

	t.Run("altered saved evidence", func(t *testing.T) {
		var s attest.SavedEvidence
		b, err := os.ReadFile(saved)
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err != nil {
			t.Fatal(err)
		}
		other, err := host.ParseManifest([]byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + moduleA + `","config":{"off":true}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		s.Pipeline.Evidence.Manifest = other.Canonical()
		altered := filepath.Join(t.TempDir(), "altered.json")
		b, err = s.Encode()
		if err == nil {
			err = os.WriteFile(altered, b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		stdout, _ := run(t, 1, "verify", "--evidence", altered, "--policy", policy)
		must(t, stdout, "FAIL pipeline id: the manifest served hashes to "+other.ID())
	})

	t.Run("json", func(t *testing.T) {
		stdout, stderr := run(t, 0, "verify", "--host", url, "--policy", policy, "--strict", "--json", "--expect-manifest", expected)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 2 || stderr != "" {
			t.Fatalf("want two lines of JSON and nothing on stderr, got:\n%s\nstderr: %s", stdout, stderr)
		}
		for i, kind := range []string{"boot", "pipeline"} {
			var r struct {
				Format            string
				CheckedAt         string `json:"checked_at"`
				OK, Strict, Fresh bool
				Evidence          struct{ Kind, Mode string }
				TD                struct{ MRTD, TDAttributes string } `json:"td"`
				Events            []struct{ Type, Value string }
				Manifest          json.RawMessage
				Checks            []struct{ Name, Verdict, Detail, Value string }
			}
			if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
				t.Fatal(err)
			}
			if r.Format != attest.ReportFormat || r.CheckedAt == "" || !r.OK || !r.Strict || !r.Fresh || r.Evidence.Kind != kind || r.Evidence.Mode != attest.ModeSim ||
				r.TD.MRTD != hex.EncodeToString(attest.SimMRTD[:]) || len(r.Events) != 7 || r.Events[3].Value != "embedded" {
				t.Errorf("%s report: %s", kind, lines[i])
			}
			if (kind == "pipeline") != (string(r.Manifest) == string(h.manifest.Canonical())) {
				t.Errorf("%s report: manifest %s", kind, r.Manifest)
			}
			if last := r.Checks[len(r.Checks)-1]; last.Name != "strict" || last.Verdict != "ok" {
				t.Errorf("%s report: last check %+v", kind, last)
			}
		}
	})
}
