package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/client/clienttest"
)

const (
	testKey  = "sk-cli-test"
	otherKey = "sk-cli-other" // a second tenant's
)

// testHost runs the real web server over the embedded engine, with an empty store and
// registry, and returns its URL.
func testHost(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("COCOON_MODEL_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "models", "stories260K")
	}
	b, err := embedded.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return serveWeb(t, web.Config{Backend: b, APIKeys: []web.APIKey{{Name: "test", Key: testKey}, {Name: "other", Key: otherKey}}})
}

// serveWeb runs the real web server with cfg, its sandbox, an empty module store and an
// empty pipeline registry filled in, until the test ends, and returns its URL.
func serveWeb(t *testing.T, cfg web.Config) string {
	t.Helper()
	ts := httptest.NewServer(clienttest.Handler(t, cfg))
	t.Cleanup(ts.Close)
	return ts.URL
}

// examplePlugin is the path of an example module built by `make plugins`.
func examplePlugin(t *testing.T, path string) string {
	t.Helper()
	path = filepath.Join("..", "..", "plugins", path)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%v: run `make plugins` first (it builds the example modules)", err)
	}
	return path
}

// cocoon runs a command line and returns its exit code and outputs.
func cocoon(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runCommand(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestPushPipelinesChat is a module author's session against a real host: push the
// example pipeline, find it, read its manifest and chat through it.
func TestPushPipelinesChat(t *testing.T) {
	base := testHost(t)
	t.Setenv("COCOON_HOST", base)
	t.Setenv("COCOON_API_KEY", testKey)
	pii := examplePlugin(t, "pii-redactor/go/pii-redactor.wasm")
	guard := examplePlugin(t, "output-guard/c/output-guard.wasm")
	guardConfig := filepath.Join(t.TempDir(), "guard.json")
	if err := os.WriteFile(guardConfig, []byte(`{"words": ["the", "was", "a"], "replacement": "***"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	hashOf := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return host.HashOf(b)
	}

	code, id, stderr := cocoon(t, "", "push", "--pre", pii, "--post", guard+":"+guardConfig, "--verbose")
	id = strings.TrimSuffix(id, "\n")
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("push: exit %d, stdout %q, stderr %q; want a pipeline id", code, id, stderr)
	}
	for _, want := range []string{hashOf(pii) + "  " + pii, hashOf(guard) + "  " + guard, base + "/p/" + id + "/v1"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("push --verbose: stderr %q does not say %q", stderr, want)
		}
	}
	if code, again, _ := cocoon(t, "", "push", "--post", guard+":"+guardConfig, "--pre", pii, "--model", "stories260K"); code != 0 || again != id+"\n" {
		t.Errorf("second push: exit %d, id %q; want the same id %q", code, again, id)
	}

	code, list, stderr := cocoon(t, "", "pipelines")
	row := regexp.MustCompile(`(?m)^` + id + ` +stories260K +` + regexp.QuoteMeta(shortHash(hashOf(pii))) + ` +` + regexp.QuoteMeta(shortHash(hashOf(guard))) + `\n`)
	if code != 0 || !strings.HasPrefix(list, "ID ") || !row.MatchString(list) {
		t.Errorf("pipelines: exit %d, stdout %q, stderr %q", code, list, stderr)
	}

	code, show, stderr := cocoon(t, "", "pipelines", "show", id)
	var m host.Manifest
	if err := json.Unmarshal([]byte(show), &m); code != 0 || err != nil || !strings.HasSuffix(show, "}\n") {
		t.Fatalf("pipelines show: exit %d, %v, stdout %q (a JSON object and a newline), stderr %q", code, err, show, stderr)
	}
	var config bytes.Buffer
	if len(m.Post) == 1 {
		json.Compact(&config, m.Post[0].Config)
		m.Post[0].Config = config.Bytes() // as uploaded, for the id
	}
	if m.Model != "stories260K" || len(m.Pre) != 1 || m.Pre[0].Module != hashOf(pii) || len(m.Post) != 1 ||
		config.String() != `{"words":["the","was","a"],"replacement":"***"}` || m.ID() != id {
		t.Errorf("pipelines show: manifest %s", show)
	}

	// Greedy decoding: the stream, the whole answer and a prompt from stdin agree, and
	// the guard masked the answer on each path.
	args := []string{"chat", "--pipeline", id, "--temperature", "0", "--max-tokens", "60"}
	code, streamed, stderr := cocoon(t, "", append(args, "Once upon a time,", "there")...)
	if code != 0 || !strings.Contains(streamed, "***") || strings.Contains(streamed, " the ") {
		t.Fatalf("chat: exit %d, stdout %q, stderr %q; want a masked answer", code, streamed, stderr)
	}
	if code, whole, stderr := cocoon(t, "", append(args, "--no-stream", "Once upon a time, there")...); code != 0 || whole != streamed {
		t.Errorf("chat --no-stream: exit %d, stdout %q, stderr %q; want %q", code, whole, stderr, streamed)
	}
	if code, piped, stderr := cocoon(t, "Once upon a time, there\n", args...); code != 0 || piped != streamed {
		t.Errorf("chat from stdin: exit %d, stdout %q, stderr %q; want %q", code, piped, stderr, streamed)
	}

	// The only owner deletes it: it is gone.
	if code, out, stderr := cocoon(t, "", "pipelines", "delete", id); code != 0 || out != "deleted "+id+"\n" {
		t.Errorf("pipelines delete: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, _, stderr := cocoon(t, "", "pipelines", "show", id); code != 1 || !strings.Contains(stderr, "404") {
		t.Errorf("show after delete: exit %d, stderr %q; want 404", code, stderr)
	}
}

func TestClientErrors(t *testing.T) {
	base := testHost(t)
	down := httptest.NewServer(nil)
	down.Close()
	pii := examplePlugin(t, "pii-redactor/go/pii-redactor.wasm")
	notWasm := filepath.Join(t.TempDir(), "text.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	badJSON := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badJSON, []byte("{words"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := strings.Repeat("0", 64)
	tests := []struct {
		name   string
		env    [2]string // COCOON_HOST, COCOON_API_KEY
		args   []string
		code   int
		stderr string
	}{
		{"host down", [2]string{down.URL, testKey}, []string{"pipelines"}, 1, "cannot reach the host at " + down.URL},
		{"not a URL", [2]string{"localhost:8080", testKey}, []string{"pipelines"}, 2, `--host "localhost:8080": want a URL`},
		{"no key", [2]string{base, ""}, []string{"chat", "hi"}, 2, "no API key: pass --api-key or set COCOON_API_KEY"},
		{"wrong key", [2]string{base, "sk-wrong"}, []string{"pipelines"}, 1, "the host refused (401 Unauthorized): the API key is not valid"},
		{"key flag wins", [2]string{base, testKey}, []string{"pipelines", "--api-key", "sk-wrong"}, 1, "the API key is not valid"},
		{"host flag wins", [2]string{base, testKey}, []string{"pipelines", "--host", down.URL}, 1, "cannot reach the host"},
		{"unknown pipeline", [2]string{base, testKey}, []string{"chat", "--pipeline", unknown, "hi"}, 1, `no pipeline with id "` + unknown + `" on this host`},
		{"show unknown", [2]string{base, testKey}, []string{"pipelines", "show", unknown}, 1, "404 Not Found"},
		{"show a bad id", [2]string{base, testKey}, []string{"pipelines", "show", "xyz"}, 2, `"xyz" is not a pipeline id`},
		{"pipelines extra", [2]string{base, testKey}, []string{"pipelines", "list"}, 2, `unexpected argument "list"`},
		{"bad temperature", [2]string{base, testKey}, []string{"chat", "--temperature", "3", "--no-stream", "hi"}, 1, "temperature: must be a number from 0 to 2"},
		{"bad temperature streaming", [2]string{base, testKey}, []string{"chat", "--temperature", "3", "hi"}, 1, "temperature: must be a number from 0 to 2"},
		{"push nothing", [2]string{base, testKey}, []string{"push"}, 2, "no module given"},
		{"push a missing file", [2]string{base, testKey}, []string{"push", "--pre", "none.wasm"}, 1, "none.wasm: no such file"},
		{"push not wasm", [2]string{base, testKey}, []string{"push", "--pre", notWasm}, 1, "the host refused (400 Bad Request): module sha256:"},
		{"push a bad config", [2]string{base, testKey}, []string{"push", "--pre", pii + ":" + badJSON}, 1, "bad.json of " + pii + " is not valid JSON"},
		{"push an unknown model", [2]string{base, testKey}, []string{"push", "--pre", pii, "--model", "gpt-9"}, 1, `"gpt-9" is not served by this host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COCOON_HOST", tt.env[0])
			t.Setenv("COCOON_API_KEY", tt.env[1])
			code, stdout, stderr := cocoon(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stderr containing %q", code, stdout, stderr, tt.code, tt.stderr)
			}
		})
	}
}

// TestPushToEveryHost: push --host A --host B puts the pipeline on every host, under
// one id, reports each host, and exits 1 when any host did not take it, after trying
// the others.
func TestPushToEveryHost(t *testing.T) {
	a, b := testHost(t), testHost(t)
	down := httptest.NewServer(nil)
	down.Close()
	pii := examplePlugin(t, "pii-redactor/go/pii-redactor.wasm")
	t.Setenv("COCOON_HOST", "")
	t.Setenv("COCOON_API_KEY", testKey)
	_, id, _ := cocoon(t, "", "pipeline-id", "--pre", pii, "--model", "stories260K")
	id = strings.TrimSpace(id)

	code, stdout, stderr := cocoon(t, "", "push", "--host", a, "--host", down.URL, "--host", b, "--pre", pii)
	if code != 1 {
		t.Fatalf("a host down: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if want := id + "  " + a + "\n" + id + "  " + b + "\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if !strings.Contains(stderr, down.URL+": cannot reach the host") || !strings.Contains(stderr, "1 of 3 hosts did not take pipeline "+id) {
		t.Errorf("stderr does not name the host that failed:\n%s", stderr)
	}
	for _, h := range []string{a, b} {
		if code, _, stderr := cocoon(t, "", "pipelines", "show", id, "--host", h); code != 0 {
			t.Errorf("%s does not serve %s: exit %d, %s", h, id, code, stderr)
		}
	}
	if code, stdout, stderr := cocoon(t, "", "push", "--host", a, "--host", b, "--pre", pii); code != 0 || strings.Count(stdout, id) != 2 {
		t.Errorf("every host up: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
