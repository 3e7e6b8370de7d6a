package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/gpu"
	"github.com/cocoonhost/cocoon/attest/tdx"
	"github.com/cocoonhost/cocoon/attest/weights"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/lifecycle"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/host/backend/openai"
	"github.com/cocoonhost/cocoon/host/backend/plugin"
	"github.com/cocoonhost/cocoon/internal/strictjson"
	"github.com/cocoonhost/cocoon/web"
)

func init() {
	register("serve", "run the host: the OpenAI-compatible API over pipelines", serve)
}

// serveConfig is the configuration of serve: the --config file's members, each also a
// flag of the same name with dashes, which overrides it.
type serveConfig struct {
	Listen            string `json:"listen"`
	Data              string `json:"data"`
	ModelDir          string `json:"model_dir"`
	Backend           string `json:"backend"`
	BackendURL        string `json:"backend_url"`
	BackendAPIKeyFile string `json:"backend_api_key_file"`
	// ModelWeights is the folder the OpenAI-compatible server reads its weights from:
	// measured at boot (attest/weights) into the model event.
	ModelWeights string `json:"model_weights"`
	APIKeyFile   string `json:"api_key_file"`
	// TelegramBotTokenFile holds the bot token that signs Mini Apps' initData; without
	// it, Mini Apps cannot call the host directly.
	TelegramBotTokenFile string `json:"telegram_bot_token_file"`
	// TelegramBotID lets Mini Apps of this bot call with initData checked against
	// Telegram's Ed25519 signature for third parties: no bot token on the host.
	TelegramBotID int64 `json:"telegram_bot_id"`
	// TelegramEnvironment is whose key signs that initData: production or test.
	TelegramEnvironment string `json:"telegram_environment"`
	// TelegramInitDataMaxAge is how old a Mini App's initData may be (its auth_date).
	TelegramInitDataMaxAge string `json:"telegram_init_data_max_age"`
	MaxGenerations         int    `json:"max_generations"`
	// MaxWaiting bounds the completions waiting for a slot (web.Config.MaxWaiting).
	MaxWaiting int `json:"max_waiting"`
	// Attest is the evidence provider: auto (tdx on a TDX guest, else sim), tdx or sim.
	Attest string `json:"attest"`
	// GPU is where GPU attestation reports come from: none (the evidence says the host
	// attests no GPU), sim (a simulated GPU) or nvml (the NVIDIA driver, in a host
	// built with -tags nvml).
	GPU string `json:"gpu"`
	// TLS serves HTTPS with RA-TLS certificates: the boot evidence in each certificate.
	TLS bool `json:"tls"`
	// SealingKeyFile holds the root sealing secret (see seal.go): a TD-private file,
	// never on the data disk.
	SealingKeyFile string `json:"sealing_key_file"`
	// ShutdownTimeout is how long a stopping host lets requests in flight finish before
	// it cuts them, a duration such as "30s".
	ShutdownTimeout string `json:"shutdown_timeout"`
	// RequireE2E refuses chat requests not sealed to the attested key
	// (web.Config.RequireE2E).
	RequireE2E bool `json:"require_e2e"`
	// AllowOrigins are the web origins whose pages may read the API's answers
	// (web.Config.AllowedOrigins): a Mini App on its developer's domain.
	AllowOrigins []string `json:"allow_origins"`
	// SnapshotMemory bounds what the sandbox's pre-initialized snapshots keep in memory
	// (host.SandboxConfig.WithSnapshotMemory), a size such as "2GiB".
	SnapshotMemory string `json:"snapshot_memory"`
	// LogFormat is text (logfmt-like key=value) or json (one object per line).
	LogFormat string `json:"log_format"`
	// LogLevel is the least level logged: debug, info (with one access log line per
	// request), warn or error.
	LogLevel string `json:"log_level"`
	billingConfig
	registryConfig
}

// The operator's API key: its file in the data directory, and its name, which makes the
// example pipeline's owner "key:operator".
const (
	apiKeyFile = "api-key"
	apiKeyName = "operator"
)

// certValidity is the lifetime of an RA-TLS certificate; attest re-issues it when a
// third of it is left. Short, since a certificate cannot be revoked.
const certValidity = time.Hour

// defaultShutdownTimeout is how long a stopping host lets requests in flight finish
// before it cuts them (--shutdown-timeout).
const defaultShutdownTimeout = "30s"

// Bounds of --snapshot-memory. The least still holds a C module's snapshot (128 KiB)
// in the eighth one owner may keep; the most guards against a unit typed wrong, since
// snapshots live in the host's memory (memfds) and more than the machine has would end
// in the OOM killer, not in modules initialized per request.
const (
	minSnapshotMemory = 1 << 20
	maxSnapshotMemory = 1 << 40
)

// byteUnits are the binary units a size flag takes, by suffix.
var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}}

// parseByteSize reads a size of at most limit bytes written as ASCII digits and a unit
// of byteUnits, such as 512MiB (no space, no fraction, no sign). ok is false for
// anything else, a size over limit included.
func parseByteSize(s string, limit int64) (n int64, ok bool) {
	for _, u := range byteUnits {
		digits, found := strings.CutSuffix(s, u.suffix)
		if !found {
			continue
		}
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n > limit>>u.shift {
			return 0, false
		}
		return n << u.shift, true
	}
	return 0, false
}

// sandboxConfig is the sandbox's configuration from cfg's checked flags.
func sandboxConfig(cfg *serveConfig) host.SandboxConfig {
	snapshots, _ := parseByteSize(cfg.SnapshotMemory, maxSnapshotMemory) // checked by parseServeFlags
	return host.NewSandboxConfig().WithSnapshotMemory(snapshots)
}

// The example pipeline, loaded on a first start when run from the repository (after
// `make plugins`): the PII redactor before the model, the output guard after it.
var (
	examplePre    = filepath.Join("plugins", "pii-redactor", "go", "pii-redactor.wasm")
	examplePost   = filepath.Join("plugins", "output-guard", "c", "output-guard.wasm")
	exampleConfig = json.RawMessage(`{"words":["darn","heck"],"replacement":"***"}`)
)

func serve(args []string, stdout, stderr io.Writer) error {
	ctx, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		watchSignals(signals, shutdown, done, stderr)
	}()
	err := runServe(ctx, args, stdout, stderr)
	close(done)
	<-watched
	return err
}

// watchSignals shuts the host down gracefully at the first SIGINT or SIGTERM, and
// exits the process at once, with status 1, at the second: an operator who asks twice
// does not want to wait for the drain. It returns when done is closed.
func watchSignals(signals <-chan os.Signal, shutdown context.CancelFunc, done <-chan struct{}, stderr io.Writer) {
	select {
	case <-signals:
		shutdown()
	case <-done:
		return
	}
	select {
	case sig := <-signals:
		fmt.Fprintf(stderr, "cocoon-host serve: second %s: exiting now, without waiting for requests in flight\n", sig)
		os.Exit(1)
	case <-done:
	}
}

// runServe runs the host until ctx is done, then shuts it down gracefully. It prints
// what an operator needs (the address, where the API key is, the example pipeline) to
// stdout, never a secret, and logs to stderr.
//
// One owner starts every long-lived part in order (backend, TON connections, ledger,
// sandbox, settler, ledger pruner, HTTP server) and stops them in the reverse order,
// each waited for before the next: requests drain, then the settler's round ends, and
// only then does the ledger close. A part that fails stops the host with its error.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	keys, keyFile, err := apiKeys(cfg)
	if err != nil {
		return err
	}
	parts := lifecycle.New(log)
	defer func() {
		if err = errors.Join(err, parts.Stop()); err == nil {
			log.Info("stopped")
		}
	}()
	if err := checkModelDir(cfg.Backend, cfg.ModelDir, cfg.Data); err != nil {
		return err
	}
	b, err := openBackend(cfg, log)
	if err != nil {
		return err
	}
	parts.Add("backend", b.Close)
	mode := resolveAttestMode(cfg)
	sealer, err := openSealer(cfg, mode)
	if err != nil {
		return err
	}
	var bill *settlement
	measured := []attest.Event{sealer.Event()}
	if cfg.WalletSeedFile != "" {
		key, origin, err := settlementKey(cfg.Data, sealer)
		if err != nil {
			return err
		}
		if bill, err = startBilling(ctx, cfg, key, sealer, log, parts); err != nil {
			return err
		}
		measured = append(measured, attest.SettlementKeyEvent(key.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(origin))
		if cfg.APIKeyAccount != "" {
			keys[0].Account = cfg.APIKeyAccount
		}
	}
	gpus, err := openGPU(cfg, stdout, log)
	if err != nil {
		return err
	}
	if closer, ok := gpus.(interface{ Close() error }); ok {
		parts.Add("gpu", closer.Close)
	}
	attestation, err := boot(ctx, cfg, mode, gpus, b, stdout, log, measured...)
	if err != nil {
		return err
	}
	sandbox, err := host.NewSandbox(ctx, sandboxConfig(cfg))
	if err != nil {
		return err
	}
	parts.Add("sandbox", func() error { return sandbox.Close(context.Background()) })
	// Compiling modules to native code takes seconds on a first start (and after an
	// upgrade); the cache makes later starts quick. Say so rather than sit silent.
	log.Info("compiling modules")
	compileStart := time.Now()
	store, err := host.OpenStore(ctx, sandbox, filepath.Join(cfg.Data, "modules"))
	if err != nil {
		return err
	}
	registry, persistent, err := openRegistry(sealer, sandbox, store, cfg.Data)
	if err != nil {
		return err
	}
	if !persistent {
		log.Warn("pipelines are kept in memory only: without a sealing source their owners could not be authenticated after a restart", "sealing", sealer.Source())
	}
	var botToken string
	if cfg.TelegramBotTokenFile != "" {
		if botToken, err = readSecret(cfg.TelegramBotTokenFile); err != nil {
			return err
		}
	}
	initDataMaxAge, _ := time.ParseDuration(cfg.TelegramInitDataMaxAge) // checked
	telegramKey := web.TelegramProductionKey
	if cfg.TelegramEnvironment == "test" {
		telegramKey = web.TelegramTestKey
	}
	wcfg := web.Config{Backend: b, Sandbox: sandbox, Store: store, Registry: registry,
		APIKeys: keys, TelegramBotToken: botToken, TelegramBotID: cfg.TelegramBotID, TelegramKey: telegramKey, TelegramMaxAge: initDataMaxAge,
		MaxGenerations: cfg.MaxGenerations, MaxWaiting: cfg.MaxWaiting, Attestation: attestation, Logger: log}
	wcfg.RequireE2E, wcfg.AllowedOrigins = cfg.RequireE2E, cfg.AllowOrigins
	if bill != nil {
		wcfg.Billing = bill.service // serves the settler's metrics too: they share one billing.Metrics
	}
	scheme := "http"
	if cfg.TLS {
		wcfg.TLS = attestation.TLSConfig(certValidity)
		scheme = "https"
	}
	srv, err := web.New(wcfg)
	if err != nil {
		return err
	}
	example, err := loadExample(ctx, b, store, registry)
	if err != nil {
		return err
	}
	log.Info("modules compiled", "modules", len(store.List()), "took", time.Since(compileStart).Round(time.Millisecond))
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	base := scheme + "://" + l.Addr().String()
	printStart(stdout, cfg, base, keyFile, example)
	if bill != nil {
		bill.print(stdout)
		parts.Go("settler", func(ctx context.Context) error {
			bill.settler.Run(ctx)
			return ctx.Err()
		})
		parts.Go("ledger pruner", func(ctx context.Context) error { return bill.prune(ctx, log) })
	}
	drain, _ := time.ParseDuration(cfg.ShutdownTimeout) // checked
	parts.Go("http server", func(ctx context.Context) error { return serveHTTP(ctx, srv, l, drain, log) })
	if cfg.Registry != "" {
		if err := startRegistrar(ctx, cfg, bill, attestation, parts, stdout, log); err != nil {
			return err
		}
	}
	log.Info("serving", "addr", l.Addr().String(), "backend", cfg.Backend, "attest", attestation.Mode(), "tls", cfg.TLS, "data", cfg.Data, "pipelines", len(registry.List()))

	select {
	case <-ctx.Done():
		log.Info("shutting down: waiting for requests in flight", "timeout", drain)
	case <-parts.Failed():
	}
	return parts.Err()
}

// printStart tells the operator where the host listens, where its API key is (never
// the key: stdout ends up in service logs) and how to call the example pipeline.
func printStart(stdout io.Writer, cfg *serveConfig, base, keyFile, example string) {
	fmt.Fprintf(stdout, "Listening on %s\n", base)
	fmt.Fprintf(stdout, "API key file: %s\n  export COCOON_API_KEY=\"$(cat %s)\"\n", keyFile, shellQuote(keyFile))
	if example == "" {
		return
	}
	fmt.Fprintf(stdout, "Example pipeline: %s\nTry it:\n  curl %s/p/%s/v1/chat/completions -H \"Authorization: Bearer $COCOON_API_KEY\" -H 'Content-Type: application/json' -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Once upon a time\"}], \"max_tokens\": 64}'\n",
		example, base, example)
	if cfg.TLS {
		fmt.Fprintf(stdout, "  (the certificate is self-signed and attested: curl needs -k and then verifies nothing;\n   'cocoon chat --host %s --trust-sim-root ... --pipeline %s' verifies it in the handshake)\n", base, example)
	}
}

// shellQuote quotes path for a POSIX shell when it holds anything but plain path
// characters.
func shellQuote(path string) string {
	if strings.Trim(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:,@") == "" {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}

// serveHTTP serves srv on l until ctx is done, then shuts it down: requests in flight
// have drain to finish, and those still running after it are cut (web.Server.Shutdown).
func serveHTTP(ctx context.Context, srv *web.Server, l net.Listener, drain time.Duration, log *slog.Logger) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// parseServeFlags reads the flags and the --config file; flags given on the command line
// override the file, which overrides the defaults.
func parseServeFlags(args []string, stderr io.Writer) (*serveConfig, error) {
	cfg := &serveConfig{Listen: "127.0.0.1:8080", Data: defaultDataDir(), Backend: "embedded", Attest: "auto", GPU: attest.GPUModeNone, ShutdownTimeout: defaultShutdownTimeout,
		SnapshotMemory: fmt.Sprintf("%dMiB", host.DefaultSnapshotMemory>>20),
		LogFormat:      "text", LogLevel: "info", TelegramEnvironment: "production", TelegramInitDataMaxAge: "24h"}
	var configFile string
	fs := newFlagSet("serve [--listen ADDR] [--data DIR] [--model-dir DIR] [--backend embedded|openai|plugin] [--attest auto|tdx|sim] [--gpu none|sim|nvml] [--tls] [--config FILE]", stderr)
	fs.StringVar(&configFile, "config", "", "JSON file with the settings below (members listen, data, model_dir, backend, backend_url, backend_api_key_file, model_weights, api_key_file, telegram_bot_token_file, telegram_bot_id, telegram_environment, telegram_init_data_max_age, max_generations, max_waiting, attest, gpu, tls, sealing_key_file, shutdown_timeout, snapshot_memory, require_e2e, allow_origins, log_format, log_level, and for billing wallet_seed_file, ton_config, ton_network, prices, settle_threshold, settle_max_delay, settle_interval, api_key_account, and for the market registry, registry, registry_endpoint, registry_stake, registry_required); flags override it")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to listen on")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory ($COCOON_DATA_DIR): modules/, pipelines/, the ledger, the API key; on a disk the machine's owner can write, so the host checks or seals what it reads back")
	fs.StringVar(&cfg.ModelDir, "model-dir", "", "model folder of the embedded backend (default $COCOON_MODEL_DIR, then DATA/models/"+defaultModel+")")
	fs.StringVar(&cfg.Backend, "backend", cfg.Backend, "embedded (in process), plugin (the embedded engine in a child process) or openai (an OpenAI-compatible server at --backend-url)")
	fs.StringVar(&cfg.BackendURL, "backend-url", "", "base URL of the OpenAI-compatible server, such as http://127.0.0.1:8000/v1")
	fs.StringVar(&cfg.ModelWeights, "model-weights", "", "folder the OpenAI-compatible server reads its weights from: measured at boot (every file, sha256-tree:<hex>, as `cocoon measure --weights` computes it) into the evidence's model event instead of the served model names")
	fs.StringVar(&cfg.BackendAPIKeyFile, "backend-api-key-file", "", "file holding the API key of the OpenAI-compatible server")
	fs.StringVar(&cfg.APIKeyFile, "api-key-file", "", "file holding the API key clients must present (default: DATA/api-key, created if missing)")
	fs.StringVar(&cfg.TelegramBotTokenFile, "telegram-bot-token-file", "", "file holding the Telegram bot token that signs Mini Apps' initData (enables 'Authorization: tma <initData>')")
	fs.Int64Var(&cfg.TelegramBotID, "telegram-bot-id", 0, "id of the Telegram bot whose Mini Apps may call with initData checked against Telegram's Ed25519 signature (enables 'Authorization: tma <initData>' without the bot token on this host)")
	fs.StringVar(&cfg.TelegramEnvironment, "telegram-environment", cfg.TelegramEnvironment, "whose key signs initData for --telegram-bot-id: Telegram's production or test environment")
	fs.StringVar(&cfg.TelegramInitDataMaxAge, "telegram-init-data-max-age", cfg.TelegramInitDataMaxAge, "how old a Mini App's initData may be (its auth_date), such as 1h")
	fs.StringVar(&cfg.Attest, "attest", cfg.Attest, "evidence provider: tdx (a TDX guest's quotes), sim (a simulated TDX whose root certificate is DATA/attest/sim-root.pem, for testing) or auto (tdx when this is a TDX guest, else sim)")
	fs.StringVar(&cfg.GPU, "gpu", cfg.GPU, "GPU attestation: none (the evidence says this host attests no GPU; a client's policy may require one), sim (a simulated NVIDIA GPU whose roots are DATA/attest/sim-gpu-roots.pem, for testing) or nvml (each GPU's report through the NVIDIA driver; needs a host built with cgo and the nvml build tag)")
	fs.StringVar(&cfg.SealingKeyFile, "sealing-key-file", "", "file holding the root sealing secret (32+ random bytes) that seals the settlement key and authenticates the ledger and pipelines: a file the TD image provisions into TD-private memory (tmpfs or ramfs), never on the data disk. Without it, sim mode uses DATA/attest/sim-sealing-root (protects nothing) and tdx mode persists no secret (no billing)")
	fs.BoolVar(&cfg.RequireE2E, "require-e2e", false, "refuse chat requests that are not encrypted to the attested key (web/E2E.md) with a 400: for a host reached only through relays, where a plaintext prompt would cross them")
	fs.Func("allow-origins", "comma-separated web origins whose pages may call this host from a browser and read its answers (CORS), such as https://app.example.com for a Mini App served there, or * for any; credentials are never ambient (no cookies), so an origin gains only the reading of answers to requests its page sends itself (default: none: a page must be served by the host, as /app/ and /page/ are)", func(v string) error {
		cfg.AllowOrigins = strings.Split(v, ",")
		return nil
	})
	fs.BoolVar(&cfg.TLS, "tls", false, "serve HTTPS with short-lived self-signed RA-TLS certificates that carry the boot evidence, for clients that verify the host in the TLS handshake")
	fs.IntVar(&cfg.MaxGenerations, "max-generations", 0, "completions running at once; more wait for a slot (see --max-waiting) (default: the number of CPUs)")
	fs.IntVar(&cfg.MaxWaiting, "max-waiting", 0, "completions that may wait for a slot, each up to 30 s, holding its body; more get 429 at once (default: 8 per slot; -1: none wait)")
	fs.StringVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long a stopping host (SIGINT, SIGTERM) lets requests in flight finish; it then cuts them with a 503 error event and their receipt. A second signal exits at once")
	fs.StringVar(&cfg.SnapshotMemory, "snapshot-memory", cfg.SnapshotMemory, "memory all pipelines' pre-initialized module snapshots may keep (KiB, MiB, GiB or TiB), from 1MiB to 1TiB; one API key's pipelines keep at most an eighth of it, and a module whose snapshot finds no room initializes itself in each request until one does")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "logs on stderr as text (key=value) or json (one object per line)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "least level logged: debug, info (with an access log line per request), warn or error")
	fs.StringVar(&cfg.WalletSeedFile, "wallet-seed-file", "", "file holding the 24-word seed of the host's TON wallet (V5R1); enables billing, which also needs ton_config and prices")
	fs.StringVar(&cfg.TONConfig, "ton-config", "", "TON global config file (liteservers) of the network escrows live on")
	fs.StringVar(&cfg.TONNetwork, "ton-network", "mainnet", "mainnet or testnet: the wallet's network")
	fs.StringVar(&cfg.Registry, "registry", "", "address of the market's registry contract to register this host on (needs billing and --registry-endpoint): at start and whenever the price list or evidence changes; failures are logged and retried")
	fs.StringVar(&cfg.RegistryEndpoint, "registry-endpoint", "", "the URL clients reach this host at, as registered, such as https://host.example:8443")
	fs.BoolVar(&cfg.RegistryRequired, "registry-required", false, "fail at start if the first registration fails, instead of serving and retrying")
	if err := cli.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if configFile != "" {
		if err := readConfig(configFile, cfg); err != nil {
			return nil, err
		}
		// The file replaced what the flags set: set them again over it.
		if err := cli.ParseFlags(fs, args); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.Backend != "embedded" && cfg.Backend != "plugin" && cfg.Backend != "openai":
		return nil, cli.UsageError(fmt.Sprintf("backend %q: must be embedded, plugin or openai", cfg.Backend))
	case cfg.Backend == "openai" && cfg.BackendURL == "":
		return nil, cli.UsageError("backend openai needs --backend-url")
	case cfg.Backend != "openai" && (cfg.BackendURL != "" || cfg.BackendAPIKeyFile != "" || cfg.ModelWeights != ""):
		return nil, cli.UsageError("--backend-url, --backend-api-key-file and --model-weights are for --backend openai (the embedded engine measures its model file itself)")
	case cfg.Attest != "auto" && cfg.Attest != attest.ModeTDX && cfg.Attest != attest.ModeSim:
		return nil, cli.UsageError(fmt.Sprintf("attest %q: must be auto, tdx or sim", cfg.Attest))
	case cfg.GPU != attest.GPUModeNone && cfg.GPU != attest.GPUModeSim && cfg.GPU != attest.GPUModeNVML:
		return nil, cli.UsageError(fmt.Sprintf("gpu %q: must be none, sim or nvml", cfg.GPU))
	case cfg.MaxGenerations < 0:
		return nil, cli.UsageError("--max-generations must not be negative")
	case cfg.LogFormat != "text" && cfg.LogFormat != "json":
		return nil, cli.UsageError(fmt.Sprintf("log format %q: must be text or json", cfg.LogFormat))
	case !slices.Contains(logLevels, cfg.LogLevel):
		return nil, cli.UsageError(fmt.Sprintf("log level %q: must be debug, info, warn or error", cfg.LogLevel))
	}
	if d, err := time.ParseDuration(cfg.TelegramInitDataMaxAge); err != nil || d <= 0 {
		return nil, cli.UsageError(fmt.Sprintf("telegram_init_data_max_age %q: want a positive duration such as 24h", cfg.TelegramInitDataMaxAge))
	}
	if cfg.TelegramEnvironment != "production" && cfg.TelegramEnvironment != "test" {
		return nil, cli.UsageError(fmt.Sprintf("telegram_environment %q: must be production or test", cfg.TelegramEnvironment))
	}
	if cfg.TelegramBotID < 0 {
		return nil, cli.UsageError(fmt.Sprintf("telegram_bot_id %d: want the bot's positive id", cfg.TelegramBotID))
	}
	if d, err := time.ParseDuration(cfg.ShutdownTimeout); err != nil || d <= 0 {
		return nil, cli.UsageError(fmt.Sprintf("shutdown_timeout %q: want a positive duration such as 30s", cfg.ShutdownTimeout))
	}
	if n, ok := parseByteSize(cfg.SnapshotMemory, maxSnapshotMemory); !ok || n < minSnapshotMemory {
		return nil, cli.UsageError(fmt.Sprintf("snapshot_memory %q: want a size from 1MiB to 1TiB in KiB, MiB, GiB or TiB, such as 2GiB", cfg.SnapshotMemory))
	}
	if err := cfg.billingConfig.check(); err != nil {
		return nil, err
	}
	if err := cfg.registryConfig.check(cfg.WalletSeedFile != ""); err != nil {
		return nil, err
	}
	cfg.ModelDir = modelDirectory(cfg.ModelDir, cfg.Data)
	return cfg, nil
}

// logLevels are the levels --log-level accepts, as slog spells them in lower case.
var logLevels = []string{"debug", "info", "warn", "error"}

// newLogger is the operator's log on w, in cfg's format and from cfg's level (both
// checked by parseServeFlags).
func newLogger(cfg *serveConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // one of logLevels, which it accepts
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// readConfig decodes the config file strictly over cfg: an unknown member, a wrong type
// or trailing data is an error that names the member, never a Go type.
func readConfig(path string, cfg *serveConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := strictjson.Decode(b, cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// apiKeys returns the key clients must present and the file it is in: --api-key-file,
// else the data directory's, created on the first start.
func apiKeys(cfg *serveConfig) (keys []web.APIKey, file string, err error) {
	file = cfg.APIKeyFile
	if file == "" {
		file = filepath.Join(cfg.Data, apiKeyFile)
	}
	if file, err = filepath.Abs(file); err != nil {
		return nil, "", err
	}
	key, err := readSecret(file)
	if errors.Is(err, fs.ErrNotExist) && cfg.APIKeyFile == "" {
		key, err = createKey(file)
	}
	if err != nil {
		return nil, "", err
	}
	return []web.APIKey{{Name: apiKeyName, Key: key}}, file, nil
}

// readSecret reads a one-line secret file, refusing one that other users may read
// (cli.ReadPrivateFile).
func readSecret(path string) (string, error) {
	b, err := cli.ReadPrivateFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// createKey writes a new random key (32 bytes, hex) to path, readable by the owner only.
// It never replaces an existing file.
func createKey(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	secret := make([]byte, 32)
	rand.Read(secret) // never fails (crypto/rand)
	key := hex.EncodeToString(secret)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.WriteString(f, key+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", err
	}
	return key, nil
}

// checkModelDir tells an operator whose built-in backend has no model folder how to get
// one, instead of the bare "no such file" the backend would give.
func checkModelDir(backendName, modelDir, data string) error {
	if backendName == "openai" {
		return nil
	}
	if _, err := os.Stat(modelDir); !errors.Is(err, fs.ErrNotExist) {
		return nil // present, or a problem the backend words better
	}
	return fmt.Errorf("no model at %s: download the default one with 'cocoon-host model pull --data %s', or point --model-dir (or $COCOON_MODEL_DIR) at a model folder",
		modelDir, data)
}

// openBackend opens the configured backend.
func openBackend(cfg *serveConfig, log *slog.Logger) (backend.Backend, error) {
	switch cfg.Backend {
	case "openai":
		var opts []openai.Option
		if cfg.BackendAPIKeyFile != "" {
			key, err := readSecret(cfg.BackendAPIKeyFile)
			if err != nil {
				return nil, err
			}
			opts = append(opts, openai.WithAPIKey(key))
		}
		return openai.New(cfg.BackendURL, opts...)
	case "plugin":
		return plugin.Launch(plugin.SelfCommand("backend", "--kind", "embedded", "--model-dir", cfg.ModelDir),
			&plugin.Options{Logger: log.With("backend", "plugin")})
	default:
		return embedded.New(cfg.ModelDir)
	}
}

// boot opens the evidence provider of mode (resolveAttestMode), measures the host into
// its event log (with its GPUs, from gpus, and the extra events: the sealing source, a
// billing host's settlement key and its origin) and takes the boot quote. A forced tdx on a machine without TDX
// fails start-up.
func boot(ctx context.Context, cfg *serveConfig, mode string, gpus attest.GPUProvider, b backend.Backend, stdout io.Writer, log *slog.Logger, extra ...attest.Event) (*attest.Host, error) {
	var p attest.Provider
	simDir := filepath.Join(cfg.Data, "attest")
	if mode == attest.ModeTDX {
		provider, err := tdx.New()
		if err != nil {
			return nil, fmt.Errorf("--attest tdx: %w; run inside a TDX guest, or use --attest sim to test without TDX", err)
		}
		p = provider
	} else {
		sim, err := attest.NewSim(simDir)
		if err != nil {
			return nil, err
		}
		p = sim
	}
	backendID, model, err := backendIdentity(ctx, cfg, b, log)
	if err != nil {
		return nil, err
	}
	h, err := attest.BootWithGPUs(ctx, p, gpus, backendID, model, extra...)
	if err != nil {
		return nil, err
	}
	if mode == attest.ModeSim {
		root := filepath.Join(simDir, attest.SimRootFile)
		log.Warn("attestation is simulated: evidence verifies only for clients that trust the simulator root", "attest", mode, "sim_root", root)
		fmt.Fprintf(stdout, "Attestation: sim (simulated TDX, not hardware: trust %s to verify)\n", root)
	} else {
		log.Info("attestation", "attest", mode)
		fmt.Fprintf(stdout, "Attestation: %s\n", mode)
	}
	return h, nil
}

// openGPU opens the GPU provider --gpu names. The simulated GPU keeps its keys in
// DATA/attest and writes there the roots and RIMs a verifier needs; nvml fails at once
// in a host built without NVML, or on a machine without the NVIDIA driver.
func openGPU(cfg *serveConfig, stdout io.Writer, log *slog.Logger) (attest.GPUProvider, error) {
	switch cfg.GPU {
	case attest.GPUModeSim:
		dir := filepath.Join(cfg.Data, "attest")
		sim, err := attest.NewSimGPU(dir)
		if err != nil {
			return nil, fmt.Errorf("--gpu sim: %w", err)
		}
		roots := filepath.Join(dir, attest.SimGPURootsFile)
		log.Warn("the GPU is simulated: its reports verify only for clients that trust its roots", "gpu", cfg.GPU, "sim_gpu_roots", roots)
		fmt.Fprintf(stdout, "GPU: sim (a simulated NVIDIA GPU, not hardware: trust %s to verify; its RIMs are %s and %s)\n",
			roots, filepath.Join(dir, attest.SimGPUDriverRIMFile), filepath.Join(dir, attest.SimGPUVBIOSRIMFile))
		return sim, nil
	case attest.GPUModeNVML:
		p, err := gpu.OpenNVML()
		if err != nil {
			return nil, fmt.Errorf("--gpu nvml: %w; use --gpu sim to test without a GPU, or --gpu none", err)
		}
		fmt.Fprintln(stdout, "GPU: nvml (each GPU's report through the NVIDIA driver)")
		return p, nil
	}
	fmt.Fprintln(stdout, "GPU: none (the evidence says this host attests no GPU)")
	return attest.NoGPU{}, nil
}

// backendIdentity returns what the event log measures of the backend and its model:
// the embedded engine's weights hash; for the other backends the served model ids,
// since the host cannot see their weights.
func backendIdentity(ctx context.Context, cfg *serveConfig, b backend.Backend, log *slog.Logger) (backendID, model string, err error) {
	if w, ok := b.(interface{ WeightsSHA256() string }); ok {
		return cfg.Backend, "sha256:" + w.WeightsSHA256(), nil
	}
	backendID = cfg.Backend
	if cfg.Backend == "openai" {
		// The URL tells a reviewer where prompts go (inside the TD or out of it);
		// credentials and query are not part of it.
		u, err := url.Parse(cfg.BackendURL)
		if err != nil {
			return "", "", err
		}
		backendID = "openai " + (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	}
	if cfg.ModelWeights != "" {
		log.Info("measuring the model weights: every byte of every file", "folder", cfg.ModelWeights)
		start := time.Now()
		m, err := weights.Measure(cfg.ModelWeights, 0)
		if err != nil {
			return "", "", fmt.Errorf("--model-weights: %w", err)
		}
		log.Info("measured the model weights", "identity", m.Root.String(), "files", m.Files, "bytes", m.Bytes, "took", time.Since(start).Round(time.Millisecond))
		return backendID, m.Root.String(), nil
	}
	models, err := b.Models(ctx)
	if err != nil {
		return "", "", fmt.Errorf("backend identity: %w", err)
	}
	ids := make([]string, len(models))
	for i, m := range models {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	return backendID, strings.Join(ids, ","), nil
}

// loadExample registers the example pipeline when the registry is empty and its modules
// are found in the working directory, and returns its id; it also returns the id of an
// example registered by an earlier start. It returns "" when there is no example.
func loadExample(ctx context.Context, b backend.Backend, store *host.Store, registry *host.Registry) (string, error) {
	pre, err1 := os.ReadFile(examplePre)
	post, err2 := os.ReadFile(examplePost)
	if err1 != nil || err2 != nil {
		return "", nil // not run from the repository, or `make plugins` was not run
	}
	models, err := b.Models(ctx)
	if err != nil {
		return "", err
	}
	if len(models) == 0 {
		return "", nil
	}
	m := &host.Manifest{ABIVersion: 1, Model: models[0].ID,
		Pre:  []host.ManifestModule{{Module: host.HashOf(pre)}},
		Post: []host.ManifestModule{{Module: host.HashOf(post), Config: exampleConfig}}}
	// The manifest goes through the parser, as an upload's does, to fill its defaults.
	m, err = host.ParseManifest(m.Canonical())
	if err != nil {
		return "", err
	}
	if _, ok := registry.Get(m.ID()); ok {
		return m.ID(), nil
	}
	if len(registry.List()) > 0 {
		return "", nil // the operator's pipelines, without the example: leave it out
	}
	for _, wasm := range [][]byte{pre, post} {
		if _, err := store.Put(ctx, wasm); err != nil {
			return "", fmt.Errorf("example pipeline: %w", err)
		}
	}
	e, _, err := registry.Add(m, "key:"+apiKeyName)
	if err != nil {
		return "", fmt.Errorf("example pipeline: %w", err)
	}
	return e.ID, nil
}
