package meter

import (
	"context"
	"os"
	"testing"

	"github.com/cocoonhost/cocoon/abi"
)

// FuzzInstrument checks that Instrument never panics, and that when wazero compiles a
// module that passed abi.Validate (which bounds what wazero allocates for it), it also
// compiles what Instrument makes of it.
func FuzzInstrument(f *testing.F) {
	for name := range testdataWasm {
		f.Add(testModule(f, name))
	}
	for _, path := range realModules(f) {
		if b, err := os.ReadFile(path); err == nil && len(b) < 1<<20 { // not the Go guests
			f.Add(b)
		}
	}
	rt := newRuntime(f, false)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := instrument(wasm, testMaxDepth, testFrameLocals)
		if err != nil {
			return
		}
		if _, err := abi.Validate(wasm); err != nil {
			return
		}
		orig, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		orig.Close(ctx)
		metered, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("wazero compiles the module but not its instrumented version: %v", err)
		}
		metered.Close(ctx)
	})
}
