package meter

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi"
)

// FuzzInstrument checks that Instrument and InstrumentDetached never panic; that
// when wazero compiles a module that passed abi.Validate (which bounds what wazero
// allocates for it), it also compiles what each makes of it; and the converse for
// InstrumentDetached, which takes the start section and the active data segments out
// of wazero's sight: a module wazero refuses must not become one it compiles (the
// host would run a module that is not WebAssembly, read its own way), unless wazero
// refuses it for a custom section, which WebAssembly says must not make a module
// invalid (wazero reads the name section; abi.Validate does not).
func FuzzInstrument(f *testing.F) {
	for name := range testdataWasm {
		f.Add(testModule(f, name))
	}
	f.Add(dataForMemory1())
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
			if strings.HasPrefix(err.Error(), "section custom:") {
				return
			}
			if detached, derr := rt.CompileModule(ctx, detached.out); derr == nil {
				detached.Close(ctx)
				t.Fatalf("wazero refuses the module (%v) but compiles its detached version", err)
			}
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
