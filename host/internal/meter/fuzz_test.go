package meter

import (
	"context"
	"os"
	"testing"

	"github.com/cocoonhost/cocoon/abi"
)

// FuzzInstrument checks that Instrument and InstrumentDetached never panic, and that
// when wazero compiles a module that passed abi.Validate (which bounds what wazero
// allocates for it), it also compiles what each makes of it.
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
		detached, detachErr := run(wasm, testMaxDepth, testFrameLocals, true)
		if err != nil || detachErr != nil {
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
		for _, out := range [][]byte{out, detached.out} {
			metered, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("wazero compiles the module but not its instrumented version: %v", err)
			}
			metered.Close(ctx)
		}
	})
}
