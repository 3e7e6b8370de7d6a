package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/tdx"
	"github.com/cocoonhost/cocoon/attest/weights"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/settle"
)

// lockedBuffer collects a server's logs, written from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// running is a serve command run in process.
type running struct {
	base, key, keyFile, example string
	attest                      string // what follows "Attestation: "
	cancel                      context.CancelFunc
	done                        chan error
	returned                    time.Time // when runServe returned; set before done receives
	stdout, logs                *lockedBuffer
}

// startServe runs serve with args and waits until it prints its address and where its
// API key is (and, when one is loaded, the example pipeline's curl line); it reads the
// key from there.
func startServe(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	r := &running{cancel: cancel, done: make(chan error, 1), stdout: &lockedBuffer{}, logs: &lockedBuffer{}}
	go func() {
		err := runServe(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), pw, r.logs)
		r.returned = time.Now()
		pw.Close()
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Error("serve did not stop")
		}
	})
	t.Cleanup(func() { pr.Close() }) // before the wait above: serve never blocks on its stdout
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		line := lines.Text()
		fmt.Fprintln(r.stdout, line)
		if v, ok := strings.CutPrefix(line, "Listening on "); ok {
			r.base = v
		} else if v, ok := strings.CutPrefix(line, "API key file: "); ok {
			r.keyFile = v
			key, err := readSecret(r.keyFile)
			if err != nil {
				t.Fatalf("the API key file serve printed: %v", err)
			}
			r.key = key
		} else if v, ok := strings.CutPrefix(line, "Attestation: "); ok {
			r.attest = v
		} else if v, ok := strings.CutPrefix(line, "Example pipeline: "); ok {
			r.example = v
		} else if strings.Contains(line, "curl ") {
			want := "curl " + r.base + "/p/" + r.example + "/v1/chat/completions -H \"Authorization: Bearer $COCOON_API_KEY\""
			if !strings.Contains(line, want) {
				t.Errorf("curl line %q does not hold %q", line, want)
			}
			break
		}
	}
	go io.Copy(r.stdout, pr)
	if r.base == "" || r.key == "" {
		t.Fatalf("serve printed no address or key; logs:\n%s", r.logs.String())
	}
	return r
}

// stop cancels the server as a signal would and checks that it stopped cleanly.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err != nil {
			t.Errorf("serve returned %v; logs:\n%s", err, r.logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop within a minute")
	}
}

func (r *running) request(t *testing.T, method, path, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestServe runs the host from the repository as `make run` does: it creates a key,
// loads the example pipeline, answers through it, lets a stream in flight finish when
// stopped, and on a second start keeps the key and the pipeline.
func TestServe(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", ".."))
	if _, err := os.Stat(examplePre); err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	data := t.TempDir()
	args := []string{"--data", data, "--model-dir", model, "--max-generations", "2"}

	r := startServe(t, args...)
	if len(r.key) != 64 || r.example == "" {
		t.Fatalf("key %q, example %q: want a 64-digit key and an example pipeline", r.key, r.example)
	}
	if info, err := os.Stat(filepath.Join(data, "api-key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("api-key file: %v, %v; want mode 0600", info, err)
	}
	for _, dir := range []string{"modules", "pipelines"} {
		if _, err := os.Stat(filepath.Join(data, dir)); err != nil {
			t.Errorf("data directory: %v", err)
		}
	}
	if resp := r.request(t, "GET", "/healthz", "", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	// The first start says it compiles the example's modules, and how long it took.
	if logs := r.logs.String(); !strings.Contains(logs, "msg=\"compiling modules\"") || !regexp.MustCompile(`msg="modules compiled" modules=2 took=\d`).MatchString(logs) {
		t.Errorf("the first start does not say it compiles modules:\n%s", logs)
	}
	chat := "/p/" + r.example + "/v1/chat/completions"
	const body = `{"messages":[{"role":"user","content":"Mail me at ann@example.com"}],"max_tokens":20,"temperature":0}`
	if resp := r.request(t, "POST", chat, "wrong", body); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %s, want 401", resp.Status)
	}
	resp := r.request(t, "POST", chat, r.key, body)
	var out struct {
		Choices []struct {
			Message struct{ Content string }
		}
		Usage struct{ PromptTokens, CompletionTokens int } `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 || out.Choices[0].Message.Content == "" {
		t.Fatalf("chat: %s, %v, %+v", resp.Status, err, out)
	}

	// A stream in flight when the host is told to stop runs to its end.
	stream := r.request(t, "POST", chat, r.key, `{"messages":[{"role":"user","content":"Tim"}],"max_tokens":400,"stream":true}`)
	events := bufio.NewScanner(stream.Body)
	if !events.Scan() || !strings.HasPrefix(events.Text(), "data: {") {
		t.Fatalf("stream: %s, first line %q", stream.Status, events.Text())
	}
	go r.cancel()
	last := ""
	for events.Scan() {
		if events.Text() != "" {
			last = events.Text()
		}
	}
	if last != "data: [DONE]" {
		t.Errorf("stream cut by the shutdown: last line %q", last)
	}
	r.stop(t)
	if logs := r.logs.String(); !strings.Contains(logs, "shutting down") || !strings.Contains(logs, "msg=stopped") {
		t.Errorf("logs do not tell the shutdown:\n%s", logs)
	}

	again := startServe(t, args...)
	defer again.stop(t)
	if again.key != r.key || again.example != r.example {
		t.Errorf("second start: key %q, example %q; want %q, %q", again.key, again.example, r.key, r.example)
	}
	var list struct{ Data []struct{ ID string } }
	resp = again.request(t, "GET", "/v1/pipelines", again.key, "")
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Data) != 1 || list.Data[0].ID != r.example {
		t.Errorf("pipelines after a restart: %+v, %v; want only the example", list, err)
	}
}

func TestServeConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := file("good.json", `{"listen": "127.0.0.1:9000", "data": "/d", "max_generations": 3, "backend": "openai", "backend_url": "http://gpu:8000/v1"}`)
	billing := file("billing.json", `{"wallet_seed_file": "/run/seed", "ton_config": "/etc/ton/testnet.json", "ton_network": "testnet",
		"prices": {"prompt_per_million": 1000, "completion_per_million": 3000, "models": {"big": {"completion_per_million": 9000}}}, "settle_max_delay": "2h", "settle_interval": "5s",
		"api_key_account": "EQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq8Uk"}`)
	tests := []struct {
		name string
		args []string
		want serveConfig // when err is empty
		err  string
	}{
		{"defaults", []string{"--data", "/d"}, serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto"}, ""},
		{"file", []string{"--config", good}, serveConfig{Listen: "127.0.0.1:9000", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "openai", BackendURL: "http://gpu:8000/v1", MaxGenerations: 3, Attest: "auto"}, ""},
		{"flags override the file", []string{"--listen", ":1", "--config", good, "--max-generations", "5"},
			serveConfig{Listen: ":1", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "openai", BackendURL: "http://gpu:8000/v1", MaxGenerations: 5, Attest: "auto"}, ""},
		{"unknown member", []string{"--config", file("unknown.json", `{"listen": ":1", "port": 2}`)}, serveConfig{}, `unknown member "port"`},
		{"wrong type", []string{"--config", file("type.json", `{"max_generations": "3"}`)}, serveConfig{}, `JSON string for field "max_generations"`},
		{"wrong nested type", []string{"--config", file("nested.json", `{"prices": {"prompt_per_million": "1"}}`)}, serveConfig{}, `JSON string for field "prices.prompt_per_million"`},
		{"not an object", []string{"--config", file("array.json", `[]`)}, serveConfig{}, "JSON array where an object is required"},
		{"trailing data", []string{"--config", file("trailing.json", `{} {}`)}, serveConfig{}, "data after the JSON object"},
		{"log format and level", []string{"--data", "/d", "--log-format", "json", "--log-level", "debug"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", LogFormat: "json", LogLevel: "debug"}, ""},
		{"log level in the file", []string{"--data", "/d", "--config", file("log.json", `{"log_level": "error"}`)},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", LogLevel: "error"}, ""},
		{"no waiting", []string{"--data", "/d", "--max-waiting", "-1"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", MaxWaiting: -1}, ""},
		{"bad log format", []string{"--log-format", "xml"}, serveConfig{}, `log format "xml": must be text or json`},
		{"bad log level", []string{"--log-level", "INFO+2"}, serveConfig{}, `log level "INFO+2": must be debug, info, warn or error`},
		{"missing file", []string{"--config", filepath.Join(dir, "none.json")}, serveConfig{}, "no such file"},
		{"bad backend", []string{"--backend", "gpu"}, serveConfig{}, `backend "gpu": must be embedded, plugin or openai`},
		{"openai without URL", []string{"--backend", "openai"}, serveConfig{}, "needs --backend-url"},
		{"attest sim", []string{"--data", "/d", "--attest", "sim"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "sim"}, ""},
		{"bad attest", []string{"--attest", "sgx"}, serveConfig{}, `attest "sgx": must be auto, tdx or sim`},
		{"URL without openai", []string{"--backend-url", "http://x"}, serveConfig{}, "are for --backend openai"},
		{"weights without openai", []string{"--model-weights", "/w"}, serveConfig{}, "the embedded engine measures its model file itself"},
		{"weights", []string{"--data", "/d", "--backend", "openai", "--backend-url", "http://gpu:8000/v1", "--model-weights", "/w"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "openai", BackendURL: "http://gpu:8000/v1", ModelWeights: "/w", Attest: "auto"}, ""},
		{"telegram", []string{"--data", "/d", "--telegram-bot-token-file", "/run/bot"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", TelegramBotTokenFile: "/run/bot", Attest: "auto"}, ""},
		{"telegram without the bot token", []string{"--data", "/d", "--telegram-bot-id", "7544535829", "--telegram-environment", "test", "--telegram-init-data-max-age", "1h"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", TelegramBotID: 7544535829, TelegramEnvironment: "test", TelegramInitDataMaxAge: "1h", Attest: "auto"}, ""},
		{"require e2e", []string{"--data", "/d", "--require-e2e"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", RequireE2E: true}, ""},
		{"allowed origins", []string{"--data", "/d", "--allow-origins", "https://app.example.com,http://localhost:5173"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", AllowOrigins: []string{"https://app.example.com", "http://localhost:5173"}}, ""},
		{"bad Telegram environment", []string{"--telegram-environment", "staging"}, serveConfig{}, `telegram_environment "staging": must be production or test`},
		{"bad initData lifetime", []string{"--telegram-init-data-max-age", "0s"}, serveConfig{}, `telegram_init_data_max_age "0s": want a positive duration`},
		{"negative bot id", []string{"--telegram-bot-id", "-5"}, serveConfig{}, `telegram_bot_id -5`},
		{"billing", []string{"--data", "/d", "--config", billing},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", billingConfig: billingConfig{
				WalletSeedFile: "/run/seed", TONConfig: "/etc/ton/testnet.json", TONNetwork: "testnet", Prices: &pricesConfig{priceTableConfig: priceTableConfig{PromptPerMillion: 1000, CompletionPerMillion: 3000},
					Models: map[string]priceTableConfig{"big": {CompletionPerMillion: 9000}}},
				SettleMaxDelay: "2h", SettleInterval: "5s", APIKeyAccount: "EQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq8Uk"}}, ""},
		{"wallet without ton_config", []string{"--wallet-seed-file", "/run/seed"}, serveConfig{}, "billing needs ton_config"},
		{"wallet without prices", []string{"--wallet-seed-file", "/run/seed", "--ton-config", "/c"}, serveConfig{}, "billing needs prices"},
		{"ton_config without wallet", []string{"--ton-config", "/c"}, serveConfig{}, "need wallet_seed_file"},
		{"bad network", []string{"--config", billing, "--ton-network", "devnet"}, serveConfig{}, `ton_network "devnet"`},
		{"bad delay", []string{"--config", file("delay.json", `{"wallet_seed_file": "/s", "ton_config": "/c", "prices": {"completion_per_million": 1}, "settle_max_delay": "soon"}`)}, serveConfig{}, "settle_max_delay"},
		{"bad interval", []string{"--config", file("interval.json", `{"wallet_seed_file": "/s", "ton_config": "/c", "prices": {"completion_per_million": 1}, "settle_interval": "0s"}`)}, serveConfig{}, `settle_interval "0s": want a positive duration`},
		{"shutdown timeout", []string{"--data", "/d", "--shutdown-timeout", "2s"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", ShutdownTimeout: "2s"}, ""},
		{"shutdown timeout in the file", []string{"--data", "/d", "--config", file("drain.json", `{"shutdown_timeout": "1m"}`)},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", ShutdownTimeout: "1m"}, ""},
		{"bad shutdown timeout", []string{"--shutdown-timeout", "soon"}, serveConfig{}, `shutdown_timeout "soon": want a positive duration`},
		{"negative shutdown timeout", []string{"--shutdown-timeout", "-1s"}, serveConfig{}, `shutdown_timeout "-1s"`},
		{"snapshot memory", []string{"--data", "/d", "--snapshot-memory", "2GiB"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", SnapshotMemory: "2GiB"}, ""},
		{"snapshot memory in the file", []string{"--data", "/d", "--config", file("snapshots.json", `{"snapshot_memory": "1MiB"}`)},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", SnapshotMemory: "1MiB"}, ""},
		{"the most snapshot memory", []string{"--data", "/d", "--snapshot-memory", "1TiB"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", SnapshotMemory: "1TiB"}, ""},
		{"snapshot memory in KiB", []string{"--data", "/d", "--snapshot-memory", "4096KiB"},
			serveConfig{Listen: "127.0.0.1:8080", Data: "/d", ModelDir: "/d/models/stories260K", Backend: "embedded", Attest: "auto", SnapshotMemory: "4096KiB"}, ""},
		{"snapshot memory without a unit", []string{"--snapshot-memory", "1073741824"}, serveConfig{}, `snapshot_memory "1073741824": want a size from 1MiB to 1TiB`},
		{"snapshot memory too small", []string{"--snapshot-memory", "1023KiB"}, serveConfig{}, `snapshot_memory "1023KiB"`},
		{"no snapshot memory", []string{"--snapshot-memory", "0MiB"}, serveConfig{}, `snapshot_memory "0MiB"`},
		{"snapshot memory too large", []string{"--snapshot-memory", "1025GiB"}, serveConfig{}, `snapshot_memory "1025GiB"`},
		{"snapshot memory overflowing", []string{"--snapshot-memory", "9223372036854775807TiB"}, serveConfig{}, `snapshot_memory "9223372036854775807TiB"`},
		{"snapshot memory wrapping to 1GiB", []string{"--snapshot-memory", "17179869185GiB"}, serveConfig{}, `snapshot_memory "17179869185GiB"`},
		{"negative snapshot memory", []string{"--snapshot-memory", "-1GiB"}, serveConfig{}, `snapshot_memory "-1GiB"`},
		{"signed snapshot memory", []string{"--snapshot-memory", "+1GiB"}, serveConfig{}, `snapshot_memory "+1GiB"`},
		{"fractional snapshot memory", []string{"--snapshot-memory", "1.5GiB"}, serveConfig{}, `snapshot_memory "1.5GiB"`},
		{"snapshot memory with a space", []string{"--snapshot-memory", "1 GiB"}, serveConfig{}, `snapshot_memory "1 GiB"`},
		{"snapshot memory in decimal units", []string{"--snapshot-memory", "1GB"}, serveConfig{}, `snapshot_memory "1GB"`},
		{"snapshot memory, a unit alone", []string{"--config", file("unit.json", `{"snapshot_memory": "GiB"}`)}, serveConfig{}, `snapshot_memory "GiB"`},
		{"unknown price member", []string{"--config", file("price.json", `{"prices": {"per_token": 1}}`)}, serveConfig{}, `unknown member "per_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COCOON_MODEL_DIR", "")
			got, err := parseServeFlags(tt.args, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want one containing %q", err, tt.err)
				}
				if err != nil && goTypeName.MatchString(err.Error()) {
					t.Errorf("error %q names a Go type", err)
				}
				return
			}
			if tt.want.LogFormat == "" {
				tt.want.LogFormat = "text"
			}
			if tt.want.LogLevel == "" {
				tt.want.LogLevel = "info"
			}
			if tt.want.TONNetwork == "" {
				tt.want.TONNetwork = "mainnet"
			}
			if tt.want.ShutdownTimeout == "" {
				tt.want.ShutdownTimeout = defaultShutdownTimeout
			}
			if tt.want.TelegramEnvironment == "" {
				tt.want.TelegramEnvironment = "production"
			}
			if tt.want.TelegramInitDataMaxAge == "" {
				tt.want.TelegramInitDataMaxAge = "24h"
			}
			if tt.want.GPU == "" {
				tt.want.GPU = attest.GPUModeNone
			}
			if tt.want.SnapshotMemory == "" {
				tt.want.SnapshotMemory = "1024MiB"
			}
			if err != nil || !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestServeSnapshotMemory: the sandbox gets the snapshot memory --snapshot-memory says,
// in bytes, and the host's default without it.
func TestServeSnapshotMemory(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int64
	}{
		{nil, host.DefaultSnapshotMemory},
		{[]string{"--snapshot-memory", "2GiB"}, 2 << 30},
		{[]string{"--snapshot-memory", "1536MiB"}, 1536 << 20},
		{[]string{"--snapshot-memory", "1MiB"}, 1 << 20},
		{[]string{"--snapshot-memory", "1TiB"}, 1 << 40},
	} {
		cfg, err := parseServeFlags(append([]string{"--data", t.TempDir()}, tc.args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sandboxConfig(cfg), host.NewSandboxConfig().WithSnapshotMemory(tc.want); !reflect.DeepEqual(got, want) {
			t.Errorf("%v: the sandbox's config is %+v, want %+v", tc.args, got, want)
		}
	}
}

// goTypeName finds what encoding/json says of Go types in an error meant for users.
var goTypeName = regexp.MustCompile(`Go (struct|value)|serveConfig|billingConfig|pricesConfig|of type (int|string|float64|bool)`)

// TestServeAttestSim starts the host with the simulator: it says so on stdout and in
// the logs, writes the root a verifier must trust, and serves boot evidence that
// verifies with that root.
func TestServeAttestSim(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	data := t.TempDir()
	r := startServe(t, "--data", data, "--model-dir", model, "--attest", "sim")
	defer r.stop(t)
	rootPath := filepath.Join(data, "attest", attest.SimRootFile)
	if !strings.HasPrefix(r.attest, "sim ") || !strings.Contains(r.attest, rootPath) {
		t.Errorf("stdout says %q, want the sim mode and %s", r.attest, rootPath)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "attest=sim") || !strings.Contains(logs, "sim_root="+rootPath) {
		t.Errorf("logs do not name the mode and the root:\n%s", logs)
	}
	pem, err := os.ReadFile(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	root, err := attest.ParseCertificatePEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	var ev attest.Evidence
	resp := r.request(t, "GET", "/v1/attestation", "", "")
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/attestation: %s, %v", resp.Status, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := attest.VerifyQuote(ev.Quote, attest.VerifyOptions{TrustedRoots: roots}); err != nil || ev.Mode != attest.ModeSim {
		t.Errorf("boot evidence (mode %q) does not verify with the written root: %v", ev.Mode, err)
	}
}

// A forced tdx on a machine without TDX stops start-up and says what to do.
func TestServeAttestTDXUnavailable(t *testing.T) {
	if tdx.Available() {
		t.Skip("this machine is a TDX guest")
	}
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	err = runServe(context.Background(), []string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--model-dir", model, "--attest", "tdx"}, io.Discard, io.Discard)
	if !errors.Is(err, tdx.ErrUnavailable) || !strings.Contains(err.Error(), "--attest sim") {
		t.Errorf("error %v, want tdx.ErrUnavailable naming --attest sim", err)
	}
}

// With --tls the host serves HTTPS whose RA-TLS certificate carries the boot evidence:
// a client that trusts the sim root verifies it in the handshake and reaches the API,
// and the evidence it pinned is the evidence the host serves.
func TestServeTLS(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	data := t.TempDir()
	r := startServe(t, "--data", data, "--model-dir", model, "--attest", "sim", "--tls")
	defer r.stop(t)
	if !strings.HasPrefix(r.base, "https://") {
		t.Fatalf("serving %s, want https", r.base)
	}
	pem, err := os.ReadFile(filepath.Join(data, "attest", attest.SimRootFile))
	if err != nil {
		t.Fatal(err)
	}
	root, err := attest.ParseCertificatePEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewRATLSVerifier(attest.Policy{}, attest.EvidenceOptions{SimRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: v.TLSConfig()}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(r.base + "/v1/attestation")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ev attest.Evidence
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/attestation: %s, %v", resp.Status, err)
	}
	pinned, _, ok := v.Pinned()
	if !ok || string(pinned.TLSKey) != string(ev.TLSKey) || string(pinned.HostKey) != string(ev.HostKey) {
		t.Error("the certificate's evidence is not the evidence the host serves")
	}
	// A client without the sim root is refused in the handshake.
	untrusted, err := attest.NewRATLSVerifier(attest.Policy{}, attest.EvidenceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uc := &http.Client{Transport: &http.Transport{TLSClientConfig: untrusted.TLSConfig()}}
	if _, err := uc.Get(r.base + "/v1/attestation"); !errors.Is(err, attest.ErrRATLS) {
		t.Errorf("untrusted sim root: %v, want ErrRATLS", err)
	}
}

// TestServeKeepsSecretsOffScreen: what serve prints (stdout lands in service logs) and
// logs says where the API key is and never holds a secret: not the API key (created in
// the data directory or the operator's own file), not the wallet seed, not the
// settlement key.
func TestServeKeepsSecretsOffScreen(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	saved := dialTON
	t.Cleanup(func() { dialTON = saved })
	dialTON = emulatedTON
	own := filepath.Join(t.TempDir(), "operator key")
	if err := os.WriteFile(own, []byte("sk-operator-own-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		keyFile func(bh *billingHost) string
	}{
		{"created key", nil, func(bh *billingHost) string { return filepath.Join(bh.data, apiKeyFile) }},
		{"own key file", []string{"--api-key-file", own}, func(*billingHost) string { return own }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bh := newBillingHost(t, append([]string{"--model-dir", model}, tc.args...)...)
			t.Chdir(filepath.Join("..", "..")) // with the example pipeline and its curl line
			r := startServe(t, bh.args...)
			resp := r.request(t, "GET", "/v1/models", r.key, "")
			resp.Body.Close()
			r.stop(t)

			if want := tc.keyFile(bh); r.keyFile != want {
				t.Errorf("serve says the key is in %q, want %q", r.keyFile, want)
			}
			out, logs := r.stdout.String(), r.logs.String()
			if !strings.Contains(out, `export COCOON_API_KEY="$(cat `+shellQuote(r.keyFile)+`)"`) || !strings.Contains(out, `-H "Authorization: Bearer $COCOON_API_KEY"`) {
				t.Errorf("stdout does not say how to use the key:\n%s", out)
			}
			settlement := hex.EncodeToString(simSettlementKey(t, bh.data).Seed())
			secrets := map[string]string{"the API key": r.key, "the settlement key": settlement, "the wallet seed": strings.Join(bh.seed, " ")}
			for what, secret := range secrets {
				if strings.Contains(out, secret) || strings.Contains(logs, secret) {
					t.Errorf("%s is on screen:\nstdout:\n%s\nlogs:\n%s", what, out, logs)
				}
			}
		})
	}
}

// TestServeWithoutModel: a host whose built-in backend has no model says how to get one
// (it used to print the backend's "no such file or directory" alone).
func TestServeWithoutModel(t *testing.T) {
	for _, kind := range []string{"embedded", "plugin"} {
		t.Run(kind, func(t *testing.T) {
			t.Setenv("COCOON_MODEL_DIR", "")
			data := t.TempDir()
			err := runServe(context.Background(), []string{"--listen", "127.0.0.1:0", "--data", data, "--backend", kind, "--attest", "sim"}, io.Discard, io.Discard)
			for _, want := range []string{"no model at " + filepath.Join(data, "models", "stories260K"), "cocoon-host model pull --data " + data, "--model-dir", "$COCOON_MODEL_DIR"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("serve without a model: %v; want it to say %q", err, want)
				}
			}
		})
	}
}

// TestServeMeasuresModelWeights: with --model-weights, the boot evidence's model event
// is the weights folder's identity (what `cocoon measure --weights` prints), not the
// names the OpenAI-compatible server chose; a changed weight gives another identity.
func TestServeMeasuresModelWeights(t *testing.T) {
	folder := t.TempDir()
	if err := os.WriteFile(filepath.Join(folder, "model.safetensors"), bytes.Repeat([]byte{0x5a}, 5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	modelEvent := func() string {
		r := startServe(t, "--data", t.TempDir(), "--attest", "sim", "--backend", "openai", "--backend-url", slowUpstream(t), "--model-weights", folder)
		defer r.stop(t)
		var ev attest.Evidence
		resp := r.request(t, "GET", "/v1/attestation", "", "")
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || resp.StatusCode != 200 {
			t.Fatalf("/v1/attestation: %s, %v", resp.Status, err)
		}
		events, err := attest.ParseEventLog(ev.EventLog)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Type == attest.EventModel {
				if !strings.Contains(r.logs.String(), "measured the model weights") {
					t.Errorf("the log does not say the weights were measured:\n%s", r.logs)
				}
				return e.Value()
			}
		}
		t.Fatal("no model event")
		return ""
	}
	want, err := weights.Measure(folder, 1)
	if err != nil {
		t.Fatal(err)
	}
	first := modelEvent()
	if first != want.Root.String() || !strings.HasPrefix(first, "sha256-tree:") {
		t.Errorf("model event %q, want the folder's identity %s", first, want.Root)
	}
	f, err := os.OpenFile(filepath.Join(folder, "model.safetensors"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x5b}, 3<<20)
	f.Close()
	if again := modelEvent(); again == first {
		t.Errorf("a changed weight left the model event at %s", again)
	}
}

// TestPricesConfig: the config's own table is the default of every model models does
// not name, and absent (all 0) it is no default: such a model is not served.
func TestPricesConfig(t *testing.T) {
	big := priceTableConfig{CompletionPerMillion: 9000}
	for _, tt := range []struct {
		name       string
		cfg        pricesConfig
		model      string
		want       settle.PriceTable
		ok         bool
		hasDefault bool
	}{
		{"one table for every model", pricesConfig{priceTableConfig: priceTableConfig{PromptPerMillion: 1}}, "any", settle.PriceTable{PromptPerMillion: 1}, true, true},
		{"a model's own", pricesConfig{priceTableConfig: priceTableConfig{PromptPerMillion: 1}, Models: map[string]priceTableConfig{"big": big}}, "big", big.table(), true, true},
		{"no default", pricesConfig{Models: map[string]priceTableConfig{"big": big}}, "small", settle.PriceTable{}, false, false},
	} {
		p := tt.cfg.prices()
		if got, ok := p.For(tt.model); got != tt.want || ok != tt.ok || (p.Default != nil) != tt.hasDefault {
			t.Errorf("%s: For(%q) = %+v, %v (default %v); want %+v, %v", tt.name, tt.model, got, ok, p.Default, tt.want, tt.ok)
		}
	}
}
