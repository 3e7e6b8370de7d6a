package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/cocoonhost/cocoon/abi"
)

// SandboxConfig configures a Sandbox. It is immutable: WithX methods return a modified
// copy. Compiled code is kept in memory only, never on disk: native code read back from a
// disk the machine's owner can write would run unchecked (RATIONALE.md, "What the host
// keeps on the data disk").
type SandboxConfig struct {
	compiles compilePoolConfig
	// snapshotMemory bounds what all snapshots keep (WithSnapshotMemory); 0 is
	// DefaultSnapshotMemory.
	snapshotMemory int64
}

// NewSandboxConfig returns the default configuration.
func NewSandboxConfig() SandboxConfig { return SandboxConfig{} }

// Sandbox compiles modules and runs them under ABI v1: it owns one wazero runtime with the
// host's imports ("cocoon", the host's own WASI without files, network, environment or
// real time, and the metering functions).
// It is safe for concurrent use. Close releases it.
type Sandbox struct {
	runtime   wazero.Runtime
	cache     wazero.CompilationCache
	compiles  *compilePool
	snapshots *snapshotBudget
}

// NewSandbox creates a sandbox. It costs a few milliseconds (host modules are built once).
func NewSandbox(ctx context.Context, cfg SandboxConfig) (*Sandbox, error) {
	cache := wazero.NewCompilationCache() // in memory: see SandboxConfig
	rc := wazero.NewRuntimeConfigCompiler().
		// Time limits come from metering instead (package meter): wazero's own check
		// exits to Go at every loop iteration (see RATIONALE.md, "Time limits").
		WithCloseOnContextDone(false).
		WithMemoryLimitPages(abi.CeilingLimits.MemoryPages).
		WithCoreFeatures(api.CoreFeaturesV2).
		WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateHostModules(ctx, rt); err != nil {
		rt.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("sandbox: host modules: %w", err)
	}
	return &Sandbox{runtime: rt, cache: cache, compiles: newCompilePool(cfg.compiles), snapshots: newSnapshotBudget(cfg.snapshotMemory)}, nil
}

// Close releases the runtime, every module compiled by it, and the in-memory cache.
func (s *Sandbox) Close(ctx context.Context) error {
	err := s.runtime.Close(ctx)
	if cerr := s.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// Module is a validated module compiled to native code, ready to be instantiated for
// requests. It is immutable and safe for concurrent use.
type Module struct {
	// Hash is "sha256:" and the hex digest of the raw uploaded bytes: the module's identity.
	Hash string
	// Size is the number of raw bytes.
	Size int
	// Info is what validation learnt: ABI version, hooks, memory.
	Info abi.ModuleInfo

	compiled wazero.CompiledModule
	init     moduleInit
}

// HashOf returns the module identity of raw wasm bytes: "sha256:<hex>".
func HashOf(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Compile validates wasm against the ABI and the limits on function bodies
// (abi.Validate), estimates what compiling it costs (EstimateCompile), instruments a copy
// of it for time limits (package meter: the module's identity stays the hash of wasm),
// and compiles that copy in the sandbox's compile pool (SandboxConfig.WithCompilePool).
// It is the expensive step (tens of milliseconds for a small module, a second or two for
// a Go guest), so it runs at upload and at start, never on the request path. Errors are
// *Error: CodeInvalidModule with a message naming the problem, or CodeCompileBusy when
// the pool has no room for it now.
func (s *Sandbox) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	return s.compile(ctx, wasm, false)
}

// Close releases the module's native code. Instances running it must be closed first.
func (m *Module) Close(ctx context.Context) error { return m.compiled.Close(ctx) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
