package host

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host/internal/meter"
)

// BenchmarkRestartCompile measures what a restart costs per module now that compiled
// code is kept in memory only: OpenStore validates, instruments and compiles every
// stored module again (memory-only). The baseline, in the same run, is the same work
// with wazero's compilation cache warm on disk (disk-cache), which is what the host did
// before it stopped trusting the data disk with native code. The modules are the example
// pipeline's: pii-redactor in Go (a Go guest) and output-guard in C.
//
//	go test -run '^$' -bench RestartCompile -benchtime 5x -count 3 ./host/
func BenchmarkRestartCompile(b *testing.B) {
	ctx := context.Background()
	for _, m := range []struct{ name, path string }{
		{"go-pii-redactor", "../plugins/pii-redactor/go/pii-redactor.wasm"},
		{"c-output-guard", "../plugins/output-guard/c/output-guard.wasm"},
	} {
		wasm, err := os.ReadFile(filepath.FromSlash(m.path))
		if err != nil {
			b.Fatalf("%v: run `make plugins` first", err)
		}
		// compile is the start-up work on one module with cache, as the sandbox
		// configures its runtime.
		compile := func(b *testing.B, cache wazero.CompilationCache) {
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(false).
				WithMemoryLimitPages(abi.CeilingLimits.MemoryPages).WithCoreFeatures(api.CoreFeaturesV2).WithCompilationCache(cache))
			defer rt.Close(ctx)
			if _, err := abi.Validate(wasm); err != nil {
				b.Fatal(err)
			}
			metered, err := meter.Instrument(wasm)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rt.CompileModule(ctx, metered); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(m.name+"/memory-only", func(b *testing.B) {
			for b.Loop() {
				cache := wazero.NewCompilationCache() // a new process: nothing compiled yet
				compile(b, cache)
				cache.Close(ctx)
			}
		})
		b.Run(m.name+"/disk-cache", func(b *testing.B) {
			dir := b.TempDir()
			warm, err := wazero.NewCompilationCacheWithDir(dir)
			if err != nil {
				b.Fatal(err)
			}
			compile(b, warm) // the earlier run that filled the cache
			warm.Close(ctx)
			for b.Loop() {
				cache, err := wazero.NewCompilationCacheWithDir(dir)
				if err != nil {
					b.Fatal(err)
				}
				compile(b, cache)
				cache.Close(ctx)
			}
		})
	}
}
