package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogs: a module author whose pipeline fails reads why with cocoon logs; another
// tenant of the host cannot.
func TestLogs(t *testing.T) {
	base := testHost(t)
	t.Setenv("COCOON_HOST", base)
	t.Setenv("COCOON_API_KEY", testKey)
	config := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(config, []byte(`{"roles": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	pii := examplePlugin(t, "pii-redactor/go/pii-redactor.wasm")
	code, id, stderr := cocoon(t, "", "push", "--pre", pii+":"+config)
	id = strings.TrimSpace(id)
	if code != 0 {
		t.Fatalf("push: exit %d, %s", code, stderr)
	}
	if code, out, _ := cocoon(t, "", "logs", "--pipeline", id); code != 0 || out != "no failed requests kept for this pipeline\n" {
		t.Errorf("logs before a failure: exit %d, %q", code, out)
	}
	if code, _, stderr := cocoon(t, "", "chat", "--pipeline", id, "my card is 4111 1111 1111 1111"); code != 1 || !strings.Contains(stderr, "500 Internal Server Error") || !strings.Contains(stderr, "read them with cocoon logs") {
		t.Fatalf("chat through the broken pipeline: exit %d, %s", code, stderr)
	}

	code, out, stderr := cocoon(t, "", "logs", "--pipeline", id)
	if code != 0 {
		t.Fatalf("logs: exit %d, %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "  500 module_error: pre module 1 (sha256:") ||
		lines[1] != "    pre[1] error log: cocoon_pre: config: roles is empty, so nothing would be scanned; leave it out to scan every message" {
		t.Errorf("logs:\n%s", out)
	}
	if strings.Contains(out, "4111") {
		t.Errorf("the logs hold the prompt:\n%s", out)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"another tenant", []string{"--api-key", otherKey, "--pipeline", id}, 1, "the host refused (403 Forbidden): only the owners of pipeline " + id + " may read its logs"},
		{"no pipeline", []string{}, 2, `--pipeline "" is not a pipeline id`},
		{"bad pipeline", []string{"--pipeline", "sha256:" + id}, 2, "is not a pipeline id"},
		{"unknown pipeline", []string{"--pipeline", strings.Repeat("0", 64)}, 1, "404 Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, stderr := cocoon(t, "", append([]string{"logs"}, tc.args...)...); code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}
	t.Setenv("COCOON_API_KEY", "")
	if code, _, stderr := cocoon(t, "", "logs", "--pipeline", id); code != 2 || !strings.Contains(stderr, "no API key") {
		t.Errorf("without a key: exit %d, %s", code, stderr)
	}
}
