package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/web"
)

// pageTestDir holds the browser driver of the reviewer's page and its pinned npm package.
var pageTestDir = filepath.Join("..", "..", "web", "page", "e2e")

// reviewedHost runs the real web server as `cocoon-host serve --attest sim` runs it:
// the embedded engine with stories260K, a simulated TDX whose root it writes to a file,
// and the example pipeline of `make run` (pii-redactor, then output-guard with its
// config), pushed with `cocoon push`. It returns the host's URL, the pipeline's id and
// the simulator root's path.
func reviewedHost(t *testing.T) (base, pipeline, rootPath string) {
	t.Helper()
	ctx := context.Background()
	engine, err := embedded.New(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	dir := t.TempDir()
	sim, err := attest.NewSim(filepath.Join(dir, "attest"))
	if err != nil {
		t.Fatal(err)
	}
	ah, err := attest.Boot(ctx, sim, "embedded", "sha256:"+engine.WeightsSHA256(), attest.SealingEvent(attest.SealingSim))
	if err != nil {
		t.Fatal(err)
	}
	base = serveWeb(t, web.Config{Backend: engine, APIKeys: []web.APIKey{{Name: "test", Key: testKey}}, Attestation: ah, MaxQuotesPerSecond: 50})
	return base, pipelineOf(t, "push", append(exampleModules(t, exampleGuard), "--host", base, "--api-key", testKey)...), filepath.Join(dir, "attest", attest.SimRootFile)
}

// exampleGuard is the output guard's config in the example pipeline.
const exampleGuard = `{"words":["darn","heck"],"replacement":"***"}`

// exampleModules returns the flags of the example pipeline's modules, with guardConfig
// as the output guard's config, for cocoon push or cocoon pipeline-id.
func exampleModules(t *testing.T, guardConfig string) []string {
	t.Helper()
	return []string{"--pre", examplePlugin(t, "pii-redactor/go/pii-redactor.wasm"),
		"--post", examplePlugin(t, "output-guard/c/output-guard.wasm") + ":" + writeTemp(t, guardConfig)}
}

// pipelineOf runs cocoon command (push, or pipeline-id) with args and returns the
// pipeline id it printed.
func pipelineOf(t *testing.T, command string, args ...string) string {
	t.Helper()
	code, out, errOut := cocoon(t, "", append([]string{command}, args...)...)
	if code != 0 {
		t.Fatalf("cocoon %s: %d %s", command, code, errOut)
	}
	id := strings.TrimSpace(out)
	if host.CheckHash("sha256:"+id) != nil {
		t.Fatalf("cocoon %s printed %q, not a pipeline id", command, out)
	}
	return id
}

// tampering serves what target serves, with edit applied to the bodies of the paths
// for which it returns a changed body; a body it cannot change fails the test, so that
// a tampering case never passes for want of tampering.
func tampering(t *testing.T, target string, edit func(path string, body []byte) ([]byte, bool)) string {
	return relay(t, target, func(r *http.Request) string { return r.URL.RequestURI() }, edit)
}

// relay serves what target serves at the path and query uri returns for each request,
// with its headers (a browser may load the page through it), and with edit, when not
// nil, applied to the bodies as for tampering.
func relay(t *testing.T, target string, uri func(*http.Request) string, edit func(path string, body []byte) ([]byte, bool)) string {
	t.Helper()
	if edit == nil {
		edit = func(string, []byte) ([]byte, bool) { return nil, false }
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target+uri(r), nil)
		req.Header = r.Header.Clone()
		// Bodies are edited and recorded as the host encodes them before any
		// compression: Go's client then asks for gzip itself and decompresses.
		req.Header.Del("Accept-Encoding")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if changed, ok := edit(r.URL.Path, body); ok {
			if bytes.Equal(changed, body) {
				t.Errorf("tampering %s changed nothing: the test would prove nothing", r.URL.Path)
			}
			body = changed
		}
		for name, values := range resp.Header {
			w.Header()[name] = values
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// startWeb runs `cocoon verify --web` with args on a free loopback port until the test
// ends, and returns the page's URL it printed.
func startWeb(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		err := runWeb(ctx, append([]string{"--web", "--listen", "127.0.0.1:0"}, args...), pw, &stderr)
		pw.CloseWithError(errors.New("cocoon verify --web returned"))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cocoon verify --web: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	_, url, found := strings.Cut(strings.TrimSpace(line), ": http://")
	if err != nil || !found {
		t.Fatalf("cocoon verify --web printed %q (%v), stderr %s", line, err, stderr.String())
	}
	return "http://" + url
}

// pageScenario is one page visit of web/page/e2e/page.mjs, and what it saw.
type pageScenario struct {
	Name        string   `json:"name"`
	URL         string   `json:"url"`
	SimRootFile string   `json:"sim_root_file,omitempty"`
	Pipelines   []string `json:"pipelines,omitempty"`
	// ExpectManifestFile is typed into the expected manifest's field; Strict ticks the
	// strict box.
	ExpectManifestFile string `json:"expect_manifest_file,omitempty"`
	Strict             bool   `json:"strict,omitempty"`
	// VerifierResultFile holds {"boot": result, "pipeline": result}: the page's
	// cocoonVerify is replaced by one that returns the first for boot evidence and the
	// second for pipeline evidence, to see how the page renders a given report.
	VerifierResultFile string `json:"verifier_result_file,omitempty"`
	Download           bool   `json:"download,omitempty"`
	// APIKey is typed into the API key's field.
	APIKey string `json:"api_key,omitempty"`
}

type pageVisit struct {
	Name         string     `json:"name"`
	Errors       []string   `json:"errors"`
	Failure      string     `json:"failure"`
	LoadMS       int        `json:"loadMs"`
	Initial      *pageShown `json:"initial"`
	Final        *pageShown `json:"final"`
	Download     string     `json:"download"`
	DownloadName string     `json:"downloadName"`
}

type pageShown struct {
	State    string      `json:"state"`
	Status   string      `json:"status"`
	ServedBy string      `json:"servedBy"`
	Verifier string      `json:"verifier"`
	Evidence []shownEvid `json:"evidence"`
}

type shownEvid struct {
	Kind        string     `json:"kind"`
	Verdict     string     `json:"verdict"`
	Pipeline    string     `json:"pipeline"`
	VerdictText string     `json:"verdictText"`
	Summary     string     `json:"summary"`
	Host        [][]string `json:"host"`
	TD          [][]string `json:"td"`
	Manifest    [][]string `json:"manifest"`
	Expected    string     `json:"expected"`
	Prompts     string     `json:"prompts"`
	Events      []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"events"`
	Modules []struct {
		Stage  string `json:"stage"`
		Module string `json:"module"`
		Config string `json:"config"`
		Limits string `json:"limits"`
	} `json:"modules"`
	Checks []struct {
		Verdict string `json:"verdict"`
		Name    string `json:"name"`
		Value   string `json:"value"`
		Detail  string `json:"detail"`
	} `json:"checks"`
}

// row returns the value of the named row of a two-column table the page shows, and
// whether there is one.
func row(rows [][]string, name string) (string, bool) {
	for _, r := range rows {
		if len(r) == 2 && r[0] == name {
			return r[1], true
		}
	}
	return "", false
}

// check returns the verdict of the named check, "" when the page shows none.
func (e shownEvid) check(name string) string {
	for _, c := range e.Checks {
		if c.Name == name {
			return c.Verdict
		}
	}
	return ""
}

func (s *pageShown) evidence(kind string) []shownEvid {
	var out []shownEvid
	for _, e := range s.Evidence {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// runPage visits the scenarios in Debian's headless Chromium through page.mjs (see
// browserDriver for the tools it needs).
func runPage(t *testing.T, scenarios ...pageScenario) map[string]pageVisit {
	t.Helper()
	node := browserDriver(t, pageTestDir)
	file := filepath.Join(t.TempDir(), "scenarios.json")
	b, _ := json.Marshal(scenarios)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Seven visits take about 45 s alone and 150 s on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "page.mjs", file)
	cmd.Dir = pageTestDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node page.mjs: %v\nstderr: %s", err, stderr.Bytes())
	}
	var visits []pageVisit
	if err := json.Unmarshal(stdout.Bytes(), &visits); err != nil {
		t.Fatalf("page.mjs printed %q: %v\nstderr: %s", stdout.Bytes(), err, stderr.Bytes())
	}
	out := map[string]pageVisit{}
	for _, v := range visits {
		if v.Failure != "" {
			t.Errorf("%s: the page did not settle: %s", v.Name, v.Failure)
		}
		for _, e := range v.Errors {
			// The host lists pipelines only to a credential: a page without one is
			// answered 401, which Chromium logs.
			if !strings.Contains(e, "status of 401") {
				t.Errorf("%s: %s", v.Name, e)
			}
		}
		out[v.Name] = v
	}
	return out
}

// TestReviewerPage is a security reviewer's session in a real browser (Debian's
// headless Chromium): the page served by the host and the same page served by
// `cocoon verify --web` verify the host in the browser with the Go verifier compiled to
// WebAssembly; simulated evidence fails until its root is given; the page shows the
// measured events, where prompts go and the example pipeline's manifest with its module
// hashes and configs; the download button yields the evidence bytes as the host served
// them; and evidence altered on its way (one byte of the event log, one word of a
// module's config in the manifest) is shown as failed.
func TestReviewerPage(t *testing.T) {
	base, pipeline, rootPath := reviewedHost(t)
	eventLogFlipped := tampering(t, base, func(path string, body []byte) ([]byte, bool) {
		// The backend event's data, "embedded" in hex: its last letter made upper case.
		return bytes.Replace(body, []byte(`"656d626564646564"`), []byte(`"656d626564646544"`), 1), path == "/v1/attestation"
	})
	manifestEdited := tampering(t, base, func(path string, body []byte) ([]byte, bool) {
		// The guard no longer replaces "heck": a config that changes what the
		// pipeline does, in evidence that is otherwise the host's own.
		return bytes.Replace(body, []byte(`"heck"`), []byte(`"hack"`), 1), path == "/v1/pipelines/"+pipeline+"/attestation"
	})
	// A host, or a relay, that drops the page's boot nonce: the host answers with the
	// quote it took at boot.
	bootNonceDropped := relay(t, base, func(r *http.Request) string {
		if r.URL.Path != "/v1/attestation" {
			return r.URL.RequestURI()
		}
		if r.URL.Query().Get("nonce") == "" {
			t.Errorf("the page asked %s without a nonce: its boot evidence cannot be fresh", r.URL)
		}
		return r.URL.Path
	}, nil)
	// What the host served the page, recorded to compare with what it downloads.
	var mu sync.Mutex
	var lastBoot []byte
	recorded := tampering(t, base, func(path string, body []byte) ([]byte, bool) {
		if path == "/v1/attestation" {
			mu.Lock()
			lastBoot = body
			mu.Unlock()
		}
		return body, false
	})
	// The example pipeline with a guard config that replaces nothing: the modules the
	// reviewer expects, doing nothing. The reviewer expects the example's manifest,
	// computed locally by cocoon pipeline-id.
	disabled := pipelineOf(t, "push", append(exampleModules(t, `{"words":[],"replacement":"***"}`), "--host", base, "--api-key", testKey)...)
	expectManifest := filepath.Join(t.TempDir(), "manifest.json")
	if id := pipelineOf(t, "pipeline-id", append(exampleModules(t, exampleGuard), "--model", "stories260K", "--write-manifest", expectManifest)...); id != pipeline {
		t.Fatalf("pipeline-id computed %s, the host serves %s", id, pipeline)
	}
	trust := []string{"--trust-sim-root", rootPath, "--api-key", testKey}
	local := startWeb(t, append([]string{"--host", base}, trust...)...)
	visits := runPage(t,
		pageScenario{Name: "host", URL: recorded + "/", SimRootFile: rootPath, Pipelines: []string{pipeline, disabled}, ExpectManifestFile: expectManifest, Download: true},
		pageScenario{Name: "local", URL: local},
		pageScenario{Name: "strict-open-policy", URL: base + "/", SimRootFile: rootPath, Strict: true},
		pageScenario{Name: "event-log-flipped", URL: startWeb(t, append([]string{"--host", eventLogFlipped}, trust...)...)},
		pageScenario{Name: "manifest-edited", URL: startWeb(t, append([]string{"--host", manifestEdited}, trust...)...)},
		pageScenario{Name: "boot-nonce-dropped", URL: startWeb(t, append([]string{"--host", bootNonceDropped}, trust...)...)},
		pageScenario{Name: "report-v1", URL: base + "/", Pipelines: []string{pipeline}, VerifierResultFile: writeTemp(t, reportV1Results)},
	)
	checkRendersReportV1(t, visits["report-v1"])

	// Served by the host, with nothing given: simulated evidence is refused.
	hostVisit := visits["host"]
	if hostVisit.Initial == nil || hostVisit.Final == nil {
		t.Fatalf("host: the page showed nothing: %+v", hostVisit)
	}
	boot := hostVisit.Initial.evidence("boot")
	if len(boot) != 1 || boot[0].Verdict != "fail" || boot[0].check("evidence mode") != "fail" || !strings.Contains(boot[0].VerdictText, "FAILED") {
		t.Errorf("host, nothing trusted: the page shows %+v, want the boot evidence failed on its evidence mode", boot)
	}
	if n := len(hostVisit.Initial.evidence("pipeline")); n != 0 {
		t.Errorf("host, nothing trusted: %d pipelines verified after a failed boot evidence", n)
	}
	if !strings.Contains(hostVisit.Initial.ServedBy, "Served by the host under review") {
		t.Errorf("host: the page says %q, not that the host served it", hostVisit.Initial.ServedBy)
	}
	// With the root given: verified, with what a reviewer must see, the example
	// pipeline as the manifest expected.
	checkVerified(t, "host", hostVisit.Final, pipeline)
	mu.Lock()
	served := lastBoot
	mu.Unlock()
	if got, _ := base64.StdEncoding.DecodeString(hostVisit.Download); len(served) == 0 || !bytes.Equal(got, served) || hostVisit.DownloadName != "cocoon-boot-evidence.json" {
		t.Errorf("the download button gave %s of %d bytes, the host served %d bytes:\n%s\n%s", hostVisit.DownloadName, len(got), len(served), got, served)
	}
	// The same modules with a config that disables the guard: the pipeline verifies
	// in every respect but the manifest the reviewer expects, and the page says so.
	for _, e := range hostVisit.Final.evidence("pipeline") {
		want, verdict := "Expected manifest: ok", "ok"
		if e.Pipeline == disabled {
			want, verdict = "Expected manifest: fail", "fail"
		}
		if e.Verdict != verdict || e.check("expected manifest") != verdict || !strings.HasPrefix(e.Expected, want) {
			t.Errorf("host: pipeline %s under the expected manifest shows %q, check %q, %q; want %s", e.Pipeline, e.Verdict, e.check("expected manifest"), e.Expected, want)
		}
	}
	if n := len(hostVisit.Final.evidence("pipeline")); n != 2 {
		t.Errorf("host: %d pipelines shown, want the example and the disabled one", n)
	}

	// Strict, with no policy: the genuine host fails, on the strict check alone.
	strict := visits["strict-open-policy"]
	if strict.Final == nil {
		t.Fatalf("strict-open-policy: the page showed nothing: %+v", strict)
	}
	if boot := strict.Final.evidence("boot"); len(boot) != 1 || boot[0].Verdict != "fail" || boot[0].check("strict") != "fail" ||
		boot[0].check("evidence mode") != "ok" || !strings.Contains(boot[0].VerdictText, "FAILED in strict mode") || !strings.Contains(boot[0].Summary, "strict mode") {
		t.Errorf("strict-open-policy: the page shows %+v, want the boot evidence failed on the strict check", boot)
	}

	// Served by cocoon verify --web from this build: trusted root and credential given
	// on its command line, so the first verification passes, pipelines listed.
	localVisit := visits["local"]
	if localVisit.Initial == nil {
		t.Fatalf("local: the page showed nothing: %+v", localVisit)
	}
	checkVerified(t, "local", localVisit.Initial, pipeline)
	if !strings.Contains(localVisit.Initial.ServedBy, "from your own build") {
		t.Errorf("local: the page says %q, not that cocoon verify --web served it", localVisit.Initial.ServedBy)
	}
	if localVisit.Initial.Verifier != hostVisit.Final.Verifier || !strings.HasPrefix(localVisit.Initial.Verifier, "verifier sha256:") {
		t.Errorf("the host's page ran %q, the local page %q: the same build must run the same verifier", hostVisit.Final.Verifier, localVisit.Initial.Verifier)
	}

	// One byte of the event log flipped: the boot evidence fails on its event log,
	// and no pipeline is verified on a host that failed.
	flipped := visits["event-log-flipped"]
	if flipped.Initial == nil {
		t.Fatalf("event-log-flipped: the page showed nothing: %+v", flipped)
	}
	boot = flipped.Initial.evidence("boot")
	if len(boot) != 1 || boot[0].Verdict != "fail" || boot[0].check("event log") != "fail" || boot[0].check("REPORTDATA binding") != "fail" {
		t.Errorf("event-log-flipped: the page shows %+v, want the boot evidence failed on its event log", boot)
	}
	if n := len(flipped.Initial.evidence("pipeline")); n != 0 || !strings.Contains(flipped.Initial.Status, "do not trust this host") {
		t.Errorf("event-log-flipped: %d pipelines verified, status %q", n, flipped.Initial.Status)
	}

	// A module's config edited in the manifest: the boot evidence passes, the
	// pipeline's fails, on its id and on the quote's binding.
	edited := visits["manifest-edited"]
	if edited.Initial == nil {
		t.Fatalf("manifest-edited: the page showed nothing: %+v", edited)
	}
	if boot := edited.Initial.evidence("boot"); len(boot) != 1 || boot[0].Verdict != "ok" {
		t.Errorf("manifest-edited: the boot evidence, untouched, shows %+v", boot)
	}
	pipelines := edited.Initial.evidence("pipeline")
	i := slices.IndexFunc(pipelines, func(e shownEvid) bool { return e.Pipeline == pipeline })
	if i < 0 || pipelines[i].Verdict != "fail" || pipelines[i].check("pipeline id") != "fail" ||
		pipelines[i].check("REPORTDATA binding") != "fail" || !strings.Contains(pipelines[i].VerdictText, "FAILED") {
		t.Errorf("manifest-edited: the page shows %+v, want pipeline %s failed on its id and binding", pipelines, pipeline)
	}
	// The boot nonce dropped on its way: the host's genuine boot quote, which answers no
	// nonce, is a replay to a page that sent one, not merely "not fresh".
	dropped := visits["boot-nonce-dropped"]
	if dropped.Initial == nil {
		t.Fatalf("boot-nonce-dropped: the page showed nothing: %+v", dropped)
	}
	if boot := dropped.Initial.evidence("boot"); len(boot) != 1 || boot[0].Verdict != "fail" || boot[0].check("nonce") != "fail" ||
		!strings.Contains(boot[0].VerdictText, "FAILED: do not trust") {
		t.Errorf("boot-nonce-dropped: the page shows %+v, want the boot evidence failed on its nonce", boot)
	}
	t.Logf("page loaded and verified in %d ms (host) and %d ms (local); in the browser: %s; %s",
		hostVisit.LoadMS, localVisit.LoadMS, hostVisit.Final.evidence("boot")[0].Summary, hostVisit.Final.evidence("pipeline")[0].Summary)
}

// checkVerified checks that a page shows the host and the example pipeline verified,
// with what the real host's report holds: the evidence's keys and the nonce it answers,
// the TD's measurements and attributes, every event, where prompts go, and the
// manifest's model, modules, configs and limits.
func checkVerified(t *testing.T, name string, shown *pageShown, pipeline string) {
	t.Helper()
	boot := shown.evidence("boot")
	if len(boot) != 1 || boot[0].Verdict != "ok" || !strings.Contains(boot[0].VerdictText, "VERIFIED") {
		t.Fatalf("%s: the boot evidence shows %+v, want it verified; status %q", name, boot, shown.Status)
	}
	if boot[0].check("evidence mode") != "ok" || boot[0].check("event log") != "ok" {
		t.Errorf("%s: checks %+v", name, boot[0].Checks)
	}
	var types []string
	for _, e := range boot[0].Events {
		types = append(types, e.Type)
	}
	if want := "host-binary abi-version sandbox-policy backend model gpus sealing boot-sealed"; strings.Join(types, " ") != want {
		t.Errorf("%s: the page shows the events %q, want %q", name, types, want)
	}
	if !strings.Contains(boot[0].Prompts, "Where prompts go: embedded") || !strings.Contains(boot[0].Prompts, `"where prompts go": ok`) {
		t.Errorf("%s: the page says %q about where prompts go", name, boot[0].Prompts)
	}
	for _, e := range boot[0].Events {
		if want := map[string]string{"backend": "embedded", "sealing": "sim", "abi-version": "1"}[e.Type]; want != "" && e.Value != want ||
			e.Type == "model" && !strings.HasPrefix(e.Value, "sha256:") || e.Type == "host-binary" && len(e.Value) != 64+len("sha256:") {
			t.Errorf("%s: event %s shows %q", name, e.Type, e.Value)
		}
	}
	for _, k := range []string{"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "td_attributes", "xfam", "mr_seam", "mr_owner", "mr_config_id", "mr_owner_config", "debug", "tcb_status"} {
		if v, ok := row(boot[0].TD, k); !ok || v == "" || k == "debug" && v != "false" {
			t.Errorf("%s: the TD's %s shows %q (%t)", name, k, v, ok)
		}
	}
	sent, _ := row(boot[0].Host, "nonce this page sent")
	if answered, _ := row(boot[0].Host, "nonce the evidence answers"); len(sent) != 64 || answered != sent || !strings.Contains(boot[0].Summary, "fresh (") {
		t.Errorf("%s: the boot evidence answers nonce %q, the page sent %q; summary %q", name, answered, sent, boot[0].Summary)
	}
	for _, k := range []string{"host key", "TLS key", "checked at"} {
		if v, _ := row(boot[0].Host, k); v == "" {
			t.Errorf("%s: the host's %s is not shown: %q", name, k, boot[0].Host)
		}
	}
	if v, _ := row(boot[0].Host, "mode"); v != "sim" {
		t.Errorf("%s: mode %q", name, v)
	}
	var found *shownEvid
	for _, e := range shown.evidence("pipeline") {
		if e.Pipeline == pipeline {
			found = &e
		}
	}
	if found == nil || found.Verdict != "ok" {
		t.Fatalf("%s: pipeline %s shows %+v, want it verified; status %q", name, pipeline, found, shown.Status)
	}
	pre, post := host.HashOf(mustRead(t, examplePlugin(t, "pii-redactor/go/pii-redactor.wasm"))),
		host.HashOf(mustRead(t, examplePlugin(t, "output-guard/c/output-guard.wasm")))
	if len(found.Modules) != 2 || found.Modules[0].Module != pre || found.Modules[1].Module != post ||
		!strings.Contains(found.Modules[1].Config, `"heck"`) || !strings.Contains(found.Modules[1].Config, `"***"`) ||
		!strings.Contains(found.Modules[0].Limits, "memory_pages=") || !strings.Contains(found.Modules[1].Limits, "time_ms=") {
		t.Errorf("%s: the manifest shows %+v, want %s then %s with the guard's config, and their limits", name, found.Modules, pre, post)
	}
	if model, _ := row(found.Manifest, "model"); model != "stories260K" {
		t.Errorf("%s: the manifest's model shows %q", name, model)
	}
	if id, _ := row(found.Host, "pipeline"); id != pipeline {
		t.Errorf("%s: the pipeline shows as %q", name, id)
	}
	for _, c := range []string{"pipeline id", "nonce", "REPORTDATA binding", "host key"} {
		if v := found.check(c); v != "ok" {
			t.Errorf("%s: pipeline check %q: %q", name, c, v)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}

// TestReviewerPageKeepsTheKeyOffPlainHTTP: the reviewer's page, served over http by a
// host on another machine (http://reviewed.cocoon.test:port/, which Chromium resolves
// to this machine's recording relay in front of the host), refuses to send the API key
// typed into it, before any request, and says why; the same page from this machine
// (127.0.0.1) sends it. Before, the page sent the key as a bearer token with every
// evidence request, and a relay on the path read it.
func TestReviewerPageKeepsTheKeyOffPlainHTTP(t *testing.T) {
	base, pipeline, rootPath := reviewedHost(t)
	var mu sync.Mutex
	var seen []string // Host and Authorization of every request
	recorded := relay(t, base, func(r *http.Request) string {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		return r.URL.RequestURI()
	}, nil)
	remote := strings.Replace(recorded, "127.0.0.1", "reviewed.cocoon.test", 1)
	visits := runPage(t,
		pageScenario{Name: "remote", URL: remote + "/", SimRootFile: rootPath, Pipelines: []string{pipeline}, APIKey: testKey},
		pageScenario{Name: "loopback", URL: recorded + "/", SimRootFile: rootPath, Pipelines: []string{pipeline}, APIKey: testKey},
	)
	mu.Lock()
	defer mu.Unlock()
	var remoteSeen, loopbackKeys int
	for _, s := range seen {
		switch {
		case strings.HasPrefix(s, "reviewed.cocoon.test:"):
			remoteSeen++
			if strings.Contains(s, testKey) {
				t.Errorf("the relay read the API key in the clear: %q", s)
			}
		case strings.Contains(s, "Bearer "+testKey):
			loopbackKeys++
		}
	}
	if remoteSeen == 0 {
		t.Errorf("the page at %s made no request through the relay: the test proves nothing", remote)
	}
	if loopbackKeys == 0 {
		t.Errorf("the page on this machine sent no API key: %q", seen)
	}
	if v := visits["remote"]; v.Final == nil || !strings.Contains(v.Final.Status, "Refusing to send the API key in plaintext to http://reviewed.cocoon.test") || len(v.Final.Evidence) != 0 {
		t.Errorf("remote: the page shows %+v, want the key refused and nothing verified", v.Final)
	}
	if v := visits["loopback"]; v.Final == nil {
		t.Errorf("loopback: the page showed nothing: %+v", v)
	} else {
		checkVerified(t, "loopback", v.Final, pipeline)
	}
}

// TestWebRelay checks `cocoon verify --web`'s wiring of its relay (web/proxy's
// PageRelay, whose refusals TestPageRelay checks): the page served is this build's,
// the relay sends --api-key when the page sends no credential, and an unreachable
// --host is a 502 that says so.
func TestWebRelay(t *testing.T) {
	// The host answers with the credential it was sent.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.Path+" with "+r.Header.Get("Authorization"))
	}))
	t.Cleanup(upstream.Close)
	relay := startWeb(t, "--host", upstream.URL, "--api-key", "relay-key")
	for path, want := range map[string]string{
		"v1/attestation": "GET /v1/attestation with Bearer relay-key",
		"":               "<title>Cocoon host: verify what runs</title>",
	} {
		resp, err := http.Get(relay + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET /%s: %d %.200s, want %q", path, resp.StatusCode, body, want)
		}
	}

	unreachable := startWeb(t, "--host", "http://127.0.0.1:1")
	resp, err := http.Get(unreachable + "v1/attestation")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "cannot reach the host") {
		t.Errorf("an unreachable host: %d %s", resp.StatusCode, body)
	}
}

// TestWebUsage checks the command lines `cocoon verify --web` refuses before serving.
func TestWebUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"verify", "--web", "--collateral", "online"}, 2, "the page reaches no server but the host"},
		{[]string{"verify", "--host", "ftp://h", "--web"}, 2, "want a URL"},
		{[]string{"verify", "--web", "--pipeline", "nothex"}, 2, "not a pipeline id"},
		{[]string{"verify", "--web", "--listen", "256.0.0.1:1"}, 1, "--listen"},
	} {
		code, _, stderr := cocoon(t, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.says) {
			t.Errorf("%q: exit %d, %s; want %d saying %q", tc.args, code, stderr, tc.code, tc.says)
		}
	}
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// reportV1Results are verifier results with every member of the report format
// cocoon-verify-report/v1 (attest.Report's MarshalJSON): the evidence's claims, the
// TD's measurements and attributes, the events, the manifest, checks with values and
// the verdicts ok, skip, warn and fail. The boot evidence passes with a warning; the
// pipeline's comes from a debug TD whose backend sends prompts out of it.
const reportV1Results = `{
 "boot": "{\"report\":{\"format\":\"cocoon-verify-report/v1\",\"ok\":true,\"strict\":false,\"fresh\":true,\"checked_at\":\"2026-12-04T10:00:00Z\",` +
	`\"evidence\":{\"kind\":\"boot\",\"mode\":\"sim\",\"host_key\":\"1111\",\"tls_key\":\"2222\",\"nonce\":\"3333\"},` +
	`\"td\":{\"mrtd\":\"a0a0\",\"rtmr0\":\"b0\",\"rtmr1\":\"b1\",\"rtmr2\":\"b2\",\"rtmr3\":\"b3\",\"td_attributes\":\"0000001000000000\",\"xfam\":\"e702060000000000\",` +
	`\"mr_seam\":\"c0c0\",\"mr_owner\":\"d0d0\",\"mr_config_id\":\"e0e0\",\"mr_owner_config\":\"f0f0\",\"debug\":false,\"tcb_status\":null},` +
	`\"events\":[{\"type\":\"host-binary\",\"value\":\"sha256:4444\"},{\"type\":\"backend\",\"value\":\"embedded\"}],\"manifest\":null,` +
	`\"checks\":[{\"name\":\"nonce\",\"verdict\":\"ok\",\"detail\":\"the evidence answers the fresh nonce this client sent\",\"value\":\"3333\"},` +
	`{\"name\":\"where prompts go\",\"verdict\":\"ok\",\"detail\":\"they stay inside the TD\",\"value\":\"embedded\"},` +
	`{\"name\":\"MRTD\",\"verdict\":\"skip\",\"detail\":\"any: the policy does not pin it\",\"value\":\"a0a0\"},` +
	`{\"name\":\"self-measurement\",\"verdict\":\"warn\",\"detail\":\"the policy pins host_binary but not mrtd\"}]}}",
 "pipeline": "{\"report\":{\"format\":\"cocoon-verify-report/v1\",\"ok\":false,\"strict\":true,\"fresh\":true,` +
	`\"evidence\":{\"kind\":\"pipeline\",\"mode\":\"sim\",\"host_key\":\"1111\",\"tls_key\":\"2222\",\"nonce\":\"5555\",\"pipeline_id\":\"6666\"},` +
	`\"td\":{\"mrtd\":\"a0a0\",\"rtmr0\":\"b0\",\"rtmr1\":\"b1\",\"rtmr2\":\"b2\",\"rtmr3\":\"b3\",\"td_attributes\":\"0100000000000000\",\"xfam\":\"e702060000000000\",` +
	`\"mr_seam\":\"c0c0\",\"mr_owner\":\"d0d0\",\"mr_config_id\":\"e0e0\",\"mr_owner_config\":\"f0f0\",\"debug\":true,\"tcb_status\":\"UpToDate\"},` +
	`\"events\":[{\"type\":\"backend\",\"value\":\"openai http://203.0.113.7:8000/v1\"}],` +
	`\"manifest\":{\"abi_version\":1,\"model\":\"stories260K\",\"pre\":[{\"module\":\"sha256:7777\",\"config\":{\"mask\":[]},\"limits\":{\"fuel\":1000}}],\"post\":[]},` +
	`\"checks\":[{\"name\":\"TD attributes\",\"verdict\":\"fail\",\"detail\":\"DEBUG is set\",\"value\":\"0100000000000000\"},` +
	`{\"name\":\"where prompts go\",\"verdict\":\"fail\",\"detail\":\"they leave the TD\",\"value\":\"openai http://203.0.113.7:8000/v1\"},` +
	`{\"name\":\"strict\",\"verdict\":\"fail\",\"detail\":\"warnings\"}]}}"
}`

// checkRendersReportV1 checks that the page shows every member of reportV1Results: a
// reviewer sees all a verifier reports, whatever the version of the page.
func checkRendersReportV1(t *testing.T, visit pageVisit) {
	t.Helper()
	if visit.Final == nil {
		t.Fatalf("report-v1: the page showed nothing: %+v", visit)
	}
	boot, pipelines := visit.Final.evidence("boot"), visit.Final.evidence("pipeline")
	if len(boot) != 1 || len(pipelines) != 1 {
		t.Fatalf("report-v1: the page shows %d boot and %d pipeline evidence; status %q", len(boot), len(pipelines), visit.Final.Status)
	}
	b, p := boot[0], pipelines[0]
	if b.Verdict != "ok" || !strings.Contains(b.VerdictText, "VERIFIED, with 1 warning") || !strings.Contains(b.Summary, "fresh (") {
		t.Errorf("report-v1: boot verdict %q %q, summary %q", b.Verdict, b.VerdictText, b.Summary)
	}
	for name, want := range map[string]string{"TLS key": "2222", "nonce the evidence answers": "3333", "checked at": "2026-12-04T10:00:00Z", "mode": "sim"} {
		if got, _ := row(b.Host, name); got != want {
			t.Errorf("report-v1: boot %s shows %q, want %q (%q)", name, got, want, b.Host)
		}
	}
	if got, _ := row(b.Host, "nonce this page sent"); len(got) != 64 {
		t.Errorf("report-v1: the boot evidence's request nonce shows %q, want 32 random bytes in hex", got)
	}
	for name, want := range map[string]string{"mrtd": "a0a0", "rtmr3": "b3", "td_attributes": "0000001000000000", "xfam": "e702060000000000",
		"mr_seam": "c0c0", "mr_owner": "d0d0", "mr_config_id": "e0e0", "mr_owner_config": "f0f0", "debug": "false",
		"tcb_status": "not evaluated: no Intel collateral was given"} {
		if got, _ := row(b.TD, name); got != want {
			t.Errorf("report-v1: boot td %s shows %q, want %q", name, got, want)
		}
	}
	verdicts := map[string]string{}
	for _, c := range b.Checks {
		verdicts[c.Name] = c.Verdict + " " + c.Value
	}
	if verdicts["nonce"] != "ok 3333" || verdicts["MRTD"] != "skip a0a0" || verdicts["self-measurement"] != "warn " {
		t.Errorf("report-v1: boot checks %+v", b.Checks)
	}
	if p.Verdict != "fail" || !strings.Contains(p.VerdictText, "FAILED") || !strings.Contains(p.Summary, "strict mode") {
		t.Errorf("report-v1: pipeline verdict %q %q, summary %q", p.Verdict, p.VerdictText, p.Summary)
	}
	if got, _ := row(p.TD, "debug"); !strings.HasPrefix(got, "true: a debug TD") {
		t.Errorf("report-v1: a debug TD shows debug %q", got)
	}
	if got, _ := row(p.Host, "pipeline"); got != "6666" {
		t.Errorf("report-v1: the pipeline shows as %q, want the report's", got)
	}
	if !strings.Contains(p.Prompts, "openai http://203.0.113.7:8000/v1") || !strings.Contains(p.Prompts, `"where prompts go": fail`) {
		t.Errorf("report-v1: where prompts go: %q", p.Prompts)
	}
	if got, _ := row(p.Manifest, "model"); got != "stories260K" || len(p.Modules) != 1 || p.Modules[0].Module != "sha256:7777" ||
		!strings.Contains(p.Modules[0].Config, `"mask": []`) || p.Modules[0].Limits != "fuel=1000" {
		t.Errorf("report-v1: the manifest shows %q, modules %+v", p.Manifest, p.Modules)
	}
}
