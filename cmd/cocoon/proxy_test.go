package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/web/proxy"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// The proxy refuses to start, exit 1 before it listens, when the host does not verify.
func TestProxyRefusesToStart(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	other := proxytest.NewHost(t, nil)
	url, id, root := h.URL, h.ID, h.Root
	tests := []struct {
		name       string
		args       []string
		code       int
		stderrPart string
	}{
		{"sim not trusted", []string{"--host", url, "--pipeline", id}, 1,
			"refusing to proxy to " + url + ", which does not verify: boot evidence: quote signature chain: "},
		{"another sim root", []string{"--host", url, "--pipeline", id, "--trust-sim-root", other.Root}, 1,
			"boot evidence: quote signature chain: not signed by the given simulator root"},
		{"module not run", []string{"--host", url, "--pipeline", id, "--trust-sim-root", root, "--expect-module", moduleA}, 1,
			"pipeline evidence: expected modules: the pipeline does not run " + moduleA},
		{"unknown pipeline", []string{"--host", url, "--pipeline", strings.Repeat("ee", 32), "--trust-sim-root", root}, 1, "the host refused (404 Not Found)"},
		{"no pipeline", []string{"--host", url}, 2, "is not a pipeline id"},
		{"unknown release mode", []string{"--host", url, "--pipeline", id, "--release", "fast"}, 2, `release "fast": want "verified" or "live"`},
		{"--host and --hosts", []string{"--host", url, "--hosts", url + "," + other.URL, "--pipeline", id}, 2, "--host and --hosts: give one of them"},
		{"not a URL in --hosts", []string{"--hosts", url + ",127.0.0.1:1", "--pipeline", id}, 2, `--host "127.0.0.1:1": want a URL`},
		{"no host verifies", []string{"--hosts", url + "," + other.URL, "--pipeline", id}, 1,
			"no host verified:\n  refusing to proxy to " + url + ", which does not verify: boot evidence: quote signature chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// A free port: were the proxy to start, it would block here and time out.
			args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--api-key", proxytest.APIKey}, tt.args...)
			code := runCommand(args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Fatalf("exit %d, want %d; stderr: %s\nwant stderr containing %q", code, tt.code, stderr.String(), tt.stderrPart)
			}
		})
	}
	if n := h.Asked("/" + id + "/attestation"); n != 1 {
		t.Errorf("%d pipeline quotes for the 3 starts that fetched evidence, 2 of which failed at the boot evidence; want 1", n)
	}
}

// TestProxyServesHosts: `cocoon proxy --hosts A,B` with a --trust-sim-root for each
// host's simulator verifies both, serves on --listen, routes requests to both, and
// exits 0 on its signal.
func TestProxyServesHosts(t *testing.T) {
	a, b := proxytest.NewHost(t, nil), proxytest.NewHost(t, nil)
	cp := startCLIProxy(t, `serving pipeline [0-9a-f]{64} of `+regexp.QuoteMeta(a.URL+", "+b.URL)+` at http`, "--hosts", a.URL+","+b.URL,
		"--pipeline", a.ID, "--trust-sim-root", a.Root, "--trust-sim-root", b.Root)
	base := cp.base
	for range 40 {
		resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(proxy.HostHeader) == "" {
			t.Fatalf("%s from %q", resp.Status, resp.Header.Get(proxy.HostHeader))
		}
	}
	for _, h := range []*proxytest.Host{a, b} {
		if n := h.Asked("/chat/completions"); n == 0 {
			t.Errorf("the host at %s served none of 40 requests", h.URL)
		}
	}
	cp.stop(t)
}

// TestChatChecksSignatures: cocoon chat checks the answer against the attested host
// key when it has one (over http, from the boot evidence it verifies first with the
// trust flags), errors included, and fails on an altered answer; without a key it says
// that the answer is not verified.
func TestChatChecksSignatures(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	trusted := []string{"chat", "--host", h.URL, "--api-key", proxytest.APIKey, "--pipeline", h.ID, "--trust-sim-root", h.Root}
	unknown := append(trusted, "--no-stream", "--pipeline", strings.Repeat("ee", 32))
	// In plaintext, so that the relay reads what it alters; to a verified http host chat
	// seals by default, and a sealed answer altered does not open.
	plain := slices.Concat(trusted, []string{"--plaintext"}) // no spare capacity that appends share
	plainUnknown := slices.Concat(unknown, []string{"--plaintext"})
	alter := func(a *proxytest.Answer) { a.Body = strings.Replace(a.Body, "world", "w0rld", 1) }
	flip := func(a *proxytest.Answer) {
		b := []byte(a.Body)
		b[len(b)/2] ^= 1
		a.Body = string(b)
	}
	for _, tt := range []struct {
		name    string
		args    []string
		rewrite func(*proxytest.Answer)
		code    int
		stdout  string
		stderr  string
	}{
		{"stream", trusted, nil, 0, "Hello, world\n", ""},
		{"whole", append(trusted, "--no-stream"), nil, 0, "Hello, world\n", ""},
		{"the host's error", unknown, nil, 1, "", "the host refused (404 Not Found): no pipeline with id"},
		{"altered stream", plain, alter, 1, "Hello, w0rld", "the answer above is not signed by the attested host key: do not trust it"},
		{"altered completion", append(plain, "--no-stream"), alter, 1, "",
			"the host's answer (200 OK) is not signed by the attested host key, so it is not shown"},
		{"altered error", plainUnknown, func(a *proxytest.Answer) { a.Status = http.StatusInternalServerError }, 1, "",
			"the host's answer (500 Internal Server Error) is not signed by the attested host key"},
		{"sealed completion altered", append(trusted, "--no-stream"), flip, 1, "",
			"does not open with this request's key, so it is not shown"},
		{"not verified", []string{"chat", "--host", h.URL, "--api-key", proxytest.APIKey, "--pipeline", h.ID}, nil, 0, "Hello, world\n",
			"note: the answer is not verified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rewrite != nil {
				h.Rewrite(tt.rewrite)
				defer h.Rewrite(nil)
			}
			var stdout, stderr bytes.Buffer
			code := runCommand(append(tt.args, "hi"), strings.NewReader(""), &stdout, &stderr)
			verifying := tt.name != "not verified"
			if code != tt.code || !strings.HasPrefix(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) ||
				(verifying && strings.Contains(stderr.String(), "not verified")) {
				t.Fatalf("exit %d; stdout %q; stderr %q", code, stdout.String(), stderr.String())
			}
		})
	}
}

// TestProxyRoutesRealHostProcesses is issue 14's acceptance with the built binaries:
// `cocoon proxy --hosts A,B,C --pipeline ID` in front of three `cocoon-host serve`
// processes (the embedded model, simulated attestation, each under its own simulator
// root, the example pipeline), under concurrent non-streaming load; every host serves a
// share; one host process is killed (SIGKILL) mid-run; no client request fails.
func TestProxyRoutesRealHostProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs three hosts")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	model := os.Getenv("COCOON_MODEL_DIR")
	if model == "" {
		model = filepath.Join(root, "..", "shared", "models", "stories260K")
	}
	scratch := t.TempDir()
	bin := filepath.Join(scratch, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/cocoon", "./cmd/cocoon-host")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keyFile := filepath.Join(scratch, "api-key")
	if err := os.WriteFile(keyFile, []byte("router-test-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// start runs a binary until the test ends, and returns it and a scanner of its stdout.
	start := func(name string, args ...string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = root // serve loads the example pipeline from the repository's plugins
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		logs, err := os.Create(filepath.Join(scratch, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logs.Close(); close(exited) }() // its one waiter
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-exited
			}
		})
		return cmd, bufio.NewScanner(out)
	}
	drain := func(s *bufio.Scanner) {
		go func() {
			for s.Scan() {
			}
		}()
	}
	type hostProc struct {
		cmd             *exec.Cmd
		url, root, pipe string
	}
	var hosts []hostProc
	for i := range 3 {
		cmd, lines := start("cocoon-host", "serve", "--data", filepath.Join(scratch, fmt.Sprint("host", i)), "--model-dir", model,
			"--listen", "127.0.0.1:0", "--api-key-file", keyFile, "--attest", "sim")
		h := hostProc{cmd: cmd}
		for h.pipe == "" && lines.Scan() {
			line := lines.Text()
			if v, ok := strings.CutPrefix(line, "Listening on "); ok {
				h.url = v
			} else if v, ok := strings.CutPrefix(line, "Attestation: sim (simulated TDX, not hardware: trust "); ok {
				h.root = strings.TrimSuffix(v, " to verify)")
			} else if v, ok := strings.CutPrefix(line, "Example pipeline: "); ok {
				h.pipe = v
			}
		}
		drain(lines)
		if h.url == "" || h.root == "" || h.pipe == "" || (i > 0 && h.pipe != hosts[0].pipe) {
			t.Fatalf("host %d started as %+v", i, h)
		}
		hosts = append(hosts, h)
	}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--api-key", "router-test-key-0123456789abcdef", "--pipeline", hosts[0].pipe,
		"--hosts", hosts[0].url + "," + hosts[1].url + "," + hosts[2].url}
	for _, h := range hosts {
		args = append(args, "--trust-sim-root", h.root)
	}
	_, lines := start("cocoon", args...)
	serving := regexp.MustCompile(`^serving pipeline .* at (http://127\.0\.0\.1:[0-9]+/v1)`)
	var base string
	for base == "" && lines.Scan() {
		if m := serving.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
		}
	}
	drain(lines)
	if base == "" {
		t.Fatal("the proxy did not serve (see its log in the test's temporary directory)")
	}

	const workers, requests, killAt = 6, 120, 40
	var (
		mu           sync.Mutex
		served       = map[string]int{}
		done, failed atomic.Int64
		firstFailure string
		killed       sync.Once
		wg           sync.WaitGroup
	)
	client := &http.Client{Timeout: time.Minute}
	for range workers {
		wg.Go(func() {
			for done.Load() < requests {
				resp, err := client.Post(base+"/chat/completions", "application/json",
					strings.NewReader(`{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16}`))
				var b []byte
				if err == nil {
					b, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"object":"chat.completion"`) {
					failed.Add(1)
					if firstFailure == "" {
						firstFailure = fmt.Sprintf("%v %v %s", err, resp, b)
					}
				} else {
					served[resp.Header.Get(proxy.HostHeader)]++
				}
				mu.Unlock()
				if done.Add(1) == killAt {
					killed.Do(func() { hosts[1].cmd.Process.Kill() })
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests through cocoon proxy to three cocoon-host processes, the second killed after %d: %d failed; served %v",
		done.Load(), killAt, failed.Load(), served)
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d requests failed; the first: %s", n, firstFailure)
	}
	for _, h := range hosts {
		if served[h.url] == 0 {
			t.Errorf("the host at %s served none: %v", h.url, served)
		}
	}
}
