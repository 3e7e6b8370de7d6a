package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest/seal"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
)

// base64Runs finds what may be base64 in a file, as encoding/json writes bytes.
var base64Runs = regexp.MustCompile(`[A-Za-z0-9+/]{16,}={0,2}`)

// TestServeKeepsAnswersOffTheDataDisk is the machine owner reading the data disk: a
// billed request with an idempotency key has its answer kept for a retry, and that
// answer, like the prompt, must not be readable in any file under DATA (the owner can
// read the disk at rest and while the host runs).
func TestServeKeepsAnswersOffTheDataDisk(t *testing.T) {
	saved := dialTON
	t.Cleanup(func() { dialTON = saved })
	dialTON = emulatedTON
	bh := newBillingHost(t, "--model-dir", embeddedModelDir(t))
	t.Chdir(filepath.Join("..", "..")) // startServe waits for the example pipeline's curl line
	r := startServe(t, bh.args...)
	bh.client.base = r.base
	const prompt = "Lily found a shiny secret box"
	body := []byte(`{"messages":[{"role":"user","content":"` + prompt + `"}],"max_tokens":24,"temperature":0}`)
	answer := func() (content string, replayed bool) {
		resp, err := bh.client.do(context.Background(), "POST", "/v1/chat/completions", "retry-me-1", body)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var a struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(raw, &a); resp.StatusCode != http.StatusOK || err != nil || len(a.Choices) == 0 || len(a.Choices[0].Message.Content) < 16 {
			t.Fatalf("chat: %s %s", resp.Status, raw)
		}
		return a.Choices[0].Message.Content, resp.Header.Get("Idempotent-Replayed") == "true"
	}
	content, _ := answer()
	// The retry still gets the first answer, from the ledger, not charged again.
	if again, replayed := answer(); again != content || !replayed {
		t.Errorf("the retry got %q (replayed %t), want the first answer %q, replayed", again, replayed, content)
	}
	r.stop(t)
	secrets := map[string]string{"the prompt": prompt, "the answer": content[:16]}
	filepath.WalkDir(bh.data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		readable := [][]byte{b}
		for _, run := range base64Runs.FindAll(b, -1) { // JSON holds bytes as base64
			if dec, err := base64.StdEncoding.DecodeString(string(run)); err == nil {
				readable = append(readable, dec)
			}
		}
		for what, s := range secrets {
			for _, r := range readable {
				if bytes.Contains(r, []byte(s)) {
					t.Errorf("%s (%q) is readable in %s", what, s, path)
					break
				}
			}
		}
		return nil
	})
}

// answerStore is a billing.Store that keeps the one answer committed to it, as the
// ledger keeps an idempotency key's, and gives it back to the next Reserve.
type answerStore struct {
	billing.Store
	kept []byte
}

func (s *answerStore) Commit(_ context.Context, _ billing.HoldID, _ *settle.Receipt, response []byte, _ func(*settle.Receipt)) error {
	s.kept = response
	return nil
}

func (s *answerStore) Reserve(context.Context, billing.Reservation) (billing.HoldID, error) {
	return 0, &billing.IdempotentError{Receipt: &settle.Receipt{Seq: 1}, Response: s.kept}
}

// TestSealedAnswers: what the ledger is given to keep is sealed, a replay gets the
// answer back, and an answer the ledger holds in the clear (an earlier version's) or
// altered comes back as not kept rather than as whatever the disk says.
func TestSealedAnswers(t *testing.T) {
	sealer, err := seal.Sim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const answer = `{"status":200,"before":"the answer"}`
	for _, tc := range []struct {
		name   string
		onDisk func(sealed []byte) []byte
		want   string
	}{
		{"sealed", func(sealed []byte) []byte { return sealed }, answer},
		{"in the clear", func([]byte) []byte { return []byte(answer) }, ""},
		{"altered", func(sealed []byte) []byte { b := bytes.Clone(sealed); b[len(b)-1] ^= 1; return b }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &answerStore{}
			s := sealedAnswers{store, sealer}
			if err := s.Commit(context.Background(), 0, &settle.Receipt{}, []byte(answer), nil); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(store.kept, []byte("the answer")) {
				t.Fatalf("the ledger was given the answer in the clear: %q", store.kept)
			}
			store.kept = tc.onDisk(store.kept)
			_, err := s.Reserve(context.Background(), billing.Reservation{})
			var idem *billing.IdempotentError
			if !errors.As(err, &idem) || string(idem.Response) != tc.want || idem.Receipt == nil {
				t.Errorf("Reserve: %v, response %q, want %q", err, idem.Response, tc.want)
			}
		})
	}
}

// TestServeNeverDumpsCore is a crash of a host whose operator (or TD image) allows core
// files: a core file holds the process's memory, every key in it in the clear, and is
// written where the operator reads it (the working directory, often the data disk, or
// systemd-coredump's store). The host is started with `ulimit -c unlimited` and
// GOTRACEBACK=crash, which makes the Go runtime abort with a core on SIGQUIT: its core
// soft limit must read 0, and where the kernel writes cores to the working directory, the
// crash must leave none.
func TestServeNeverDumpsCore(t *testing.T) {
	if _, err := os.Stat("/proc/self/limits"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `ulimit -c unlimited || exit 3; exec "$0" "$@"`, os.Args[0], "-test.run=^TestServeBillingHelperProcess$", "--",
		"serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--attest", "sim", "--model-dir", embeddedModelDir(t))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envBillingHelper+"=1", "GOTRACEBACK=crash")
	h := startHostCommand(t, cmd)
	if h.base == "" {
		if cmd.Wait(); cmd.ProcessState.ExitCode() == 3 {
			t.Skip("this machine's hard limit forbids core files: the attack cannot be set up")
		}
		t.Fatalf("the host did not start; logs:\n%s", h.logs.String())
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	core := regexp.MustCompile(`(?m)^Max core file size\s+(\S+)`).FindSubmatch(limits) // the soft limit, which applies
	if core == nil || string(core[1]) != "0" {
		t.Errorf("the host may dump core: %q\n%s", core, limits)
	}

	pattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	if p := strings.TrimSpace(string(pattern)); p == "" || strings.ContainsAny(p, "|/") {
		return // cores go to a program or elsewhere: the limit above is what they honour
	}
	cmd.Process.Signal(syscall.SIGQUIT)
	cmd.Wait()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "core") {
			t.Errorf("the crash left %s in the host's working directory", e.Name())
		}
	}
	if !strings.Contains(h.logs.String(), "SIGQUIT") {
		t.Errorf("the host did not crash on SIGQUIT; logs:\n%s", h.logs.String())
	}
}

// TestServeRefusesSecretFilesOthersRead is another user of the machine reading the
// host's secrets where the operator left them readable (mode 0644, as `echo KEY > FILE`
// makes under the usual umask): the host must refuse to start on them, saying how to
// fix the mode and not what the file holds, rather than serve with a key everyone has.
func TestServeRefusesSecretFilesOthersRead(t *testing.T) {
	model := embeddedModelDir(t)
	const secret = "sk-readable-by-all-4f2a9c0e1b7d3e5f6a8b9c0d1e2f3a4b"
	for _, tc := range []struct {
		name, flag string
		dir        func(*testing.T) string
	}{
		{"API key", "--api-key-file", (*testing.T).TempDir},
		{"Telegram bot token", "--telegram-bot-token-file", (*testing.T).TempDir},
		{"root sealing secret", "--sealing-key-file", tmpfsDir}, // memory-backed, as it must be
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(tc.dir(t), "secret")
			if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stdout, logs bytes.Buffer
			err := runServe(ctx, []string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--attest", "sim", "--model-dir", model, tc.flag, file}, &stdout, &logs)
			if err == nil || !strings.Contains(err.Error(), "other users of this machine can read it (mode 0644): chmod 600 "+file) {
				t.Errorf("serve with %s %s (mode 0644) returned %v", tc.flag, file, err)
			}
			if err != nil && strings.Contains(err.Error(), secret) || strings.Contains(stdout.String()+logs.String(), secret) {
				t.Errorf("the secret is on screen: %v\n%s%s", err, &stdout, &logs)
			}
		})
	}
}

// TestServeKeepsUpstreamKeyFromClientsAndLogs is an inference server that quotes the
// host's API key for it back, in an error answer, in an error event inside a stream,
// and with the client's prompt: neither the client's answer nor the host's log may hold
// the key, nor the log the prompt, nor the answer the server's address.
func TestServeKeepsUpstreamKeyFromClientsAndLogs(t *testing.T) {
	const upstreamKey = "sk-upstream-7e1f0c2b9a8d4e6f"
	const prompt = "my card is 4111 1111 1111 1111"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"echo","object":"model","owned_by":"test"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		quoted := fmt.Sprintf("%q", "Incorrect API key provided: "+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")+" at http://"+r.Host+" for "+string(body))
		if bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"error":{"message":`+quoted+`,"code":401}}`+"\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":`+quoted+`,"type":"invalid_request_error","code":"invalid_api_key"}}`)
	})
	upstream := httptest.NewServer(mux)
	t.Cleanup(upstream.Close)
	keyFile := filepath.Join(t.TempDir(), "upstream-key")
	if err := os.WriteFile(keyFile, []byte(upstreamKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", "..")) // startServe waits for the example pipeline's curl line
	r := startServe(t, "--data", t.TempDir(), "--attest", "sim", "--log-level", "debug", "--backend", "openai", "--backend-url", upstream.URL+"/v1", "--backend-api-key-file", keyFile)
	var answers strings.Builder
	for _, stream := range []bool{false, true} {
		resp := r.request(t, "POST", "/v1/chat/completions", r.key, fmt.Sprintf(`{"model":"echo","messages":[{"role":"user","content":%q}],"stream":%t}`, prompt, stream))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(b, []byte("[redacted]")) {
			t.Errorf("stream %t: the upstream's error did not reach the client redacted: %s %s", stream, resp.Status, b)
		}
		answers.Write(b)
	}
	r.stop(t)
	server := strings.TrimPrefix(upstream.URL, "http://")
	for what, leak := range map[string]struct{ text, secret string }{
		"the upstream key in an answer":       {answers.String(), upstreamKey},
		"the upstream's address in an answer": {answers.String(), server},
		"the upstream key in the log":         {r.logs.String() + r.stdout.String(), upstreamKey},
		"the prompt in the log":               {r.logs.String() + r.stdout.String(), "4111"},
	} {
		if strings.Contains(leak.text, leak.secret) {
			t.Errorf("%s:\n%s", what, leak.text)
		}
	}
}
