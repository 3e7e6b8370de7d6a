package scripts

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// notOnGoOnlyMachine are the tools a machine with only Go lacks: the compilers of the
// C, WAT, AssemblyScript and Rust modules and Node.js.
var notOnGoOnlyMachine = regexp.MustCompile(`^(clang.*|wat2wasm|wasm-ld.*|lld.*|node|nodejs|npm|npx|rustc|rustup|cargo)$`)

// TestMakeRunNeedsOnlyGo is the README's first command on a machine with only Go: in a
// copy of the repository as a clone has it (tracked and new files, nothing ignored, so
// no module built here), `make run` with a PATH stripped of clang, wat2wasm, wasm-ld,
// node, npm and rustc must serve the example pipeline, and a chat through it must
// answer 200.
func TestMakeRunNeedsOnlyGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the host: not in -short")
	}
	for _, tool := range []string{"make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: this test needs it", tool)
		}
	}
	model := os.Getenv("COCOON_MODEL_DIR")
	if model == "" {
		model = filepath.Join("..", "..", "shared", "models", "stories260K")
	}
	model, err := filepath.Abs(model)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(model, "stories260K.bin")); err != nil {
		t.Fatalf("the model: %v (set COCOON_MODEL_DIR)", err)
	}

	clone := cloneWorkTree(t, "..")
	data := t.TempDir()
	run := exec.Command("make", "--no-print-directory", "run", "DATA="+data, "LISTEN=127.0.0.1:0",
		// The Makefile names Debian's rustc by path: point it nowhere, as on a Go-only machine.
		"RUSTC=/nonexistent/rustc")
	run.Dir = clone
	run.Env = append(os.Environ(), "PATH="+goOnlyPath(t), "COCOON_MODEL_DIR="+model)
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // make, go run and the host: one group to stop
	stdout, stdoutW := io.Pipe()
	var stderr strings.Builder
	var stderrMu sync.Mutex
	run.Stdout = stdoutW
	run.Stderr = writerFunc(func(p []byte) (int, error) {
		stderrMu.Lock()
		defer stderrMu.Unlock()
		return stderr.Write(p)
	})
	stderrText := func() string {
		stderrMu.Lock()
		defer stderrMu.Unlock()
		return stderr.String()
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { // the one waiter of make run; stopGroup waits for it
		run.Wait()
		stdoutW.Close()
		close(exited)
	}()
	t.Cleanup(func() { stopGroup(t, run, exited) })

	// The first start builds the verifier page, the Go module and the host: minutes on a
	// loaded CI machine, not hours.
	base, pipeline, err := readStart(stdout, 10*time.Minute)
	if err != nil {
		t.Fatalf("make run: %v\nstderr:\n%s", err, stderrText())
	}
	key, err := os.ReadFile(filepath.Join(data, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	// The request the host's start message suggests.
	body := `{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16}`
	req, err := http.NewRequest("POST", base+"/p/"+pipeline+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 2 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var completion struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &completion) != nil || len(completion.Choices) != 1 || completion.Choices[0].Message.Content == "" {
		t.Fatalf("chat through the example pipeline: %s\n%s\nstderr:\n%s", resp.Status, answer, stderrText())
	}
}

// cloneWorkTree copies into a new directory the files of the repository at repo that a
// clone of it would have, with the changes of its work tree: tracked files and new ones,
// never an ignored one (built modules, node_modules, the page's build).
func cloneWorkTree(t *testing.T, repo string) string {
	t.Helper()
	list := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	list.Dir = repo
	out, err := list.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	clone := t.TempDir()
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repo, name)
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(clone, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return clone
}

// goOnlyPath returns a PATH of one new directory holding a link to every program of the
// current PATH but those a Go-only machine lacks (notOnGoOnlyMachine).
func goOnlyPath(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if notOnGoOnlyMachine.MatchString(e.Name()) {
				continue
			}
			info, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
				continue
			}
			// The first of a name on PATH wins, as for a lookup.
			if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(bin, e.Name())); err != nil && !errors.Is(err, os.ErrExist) {
				t.Fatal(err)
			}
		}
	}
	for _, tool := range []string{"go", "make", "sh"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			t.Fatalf("%s is not on PATH", tool)
		}
	}
	return bin
}

var (
	listening = regexp.MustCompile(`^Listening on (http://\S+)$`)
	example   = regexp.MustCompile(`^Example pipeline: ([0-9a-f]{64})$`)
)

// readStart reads the host's start message for its address and the example pipeline's
// id. It fails when stdout ends first or after timeout.
func readStart(stdout io.Reader, timeout time.Duration) (base, pipeline string, err error) {
	type result struct{ base, pipeline string }
	found := make(chan result, 1)
	go func() { // ends when stdout does: the cleanup stops the host
		var r result
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if m := listening.FindStringSubmatch(lines.Text()); m != nil {
				r.base = m[1]
			}
			if m := example.FindStringSubmatch(lines.Text()); m != nil {
				r.pipeline = m[1]
			}
			if r.base != "" && r.pipeline != "" {
				found <- r
				io.Copy(io.Discard, stdout)
				return
			}
		}
		close(found)
	}()
	select {
	case r, ok := <-found:
		if !ok {
			return "", "", errors.New("exited before it printed its address and the example pipeline")
		}
		return r.base, r.pipeline, nil
	case <-time.After(timeout):
		return "", "", errors.New("no address and example pipeline after " + timeout.String())
	}
}

// stopGroup ends cmd's process group as an operator's Ctrl-C would (SIGINT: the host
// stops and exits), then with SIGKILL if it has not exited within 30 s.
func stopGroup(t *testing.T, cmd *exec.Cmd, exited <-chan struct{}) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Errorf("make run did not stop within 30 s of SIGINT")
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
