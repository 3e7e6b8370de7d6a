package abi

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// TestWASIFunctionsMatchWazero checks WASIFunctions against what wazero implements,
// both ways: every function wazero exports is in the table with its exact signature,
// and the table has nothing else.
func TestWASIFunctionsMatchWazero(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		t.Fatal(err)
	}
	defs := r.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions()
	if WASIModule != wasi_snapshot_preview1.ModuleName {
		t.Errorf("WASIModule = %q, wazero's is %q", WASIModule, wasi_snapshot_preview1.ModuleName)
	}
	for name, def := range defs {
		got := FuncType{Params: fromAPI(def.ParamTypes()), Results: fromAPI(def.ResultTypes())}
		want, ok := WASIFunctions[name]
		switch {
		case !ok:
			t.Errorf("wazero implements %s %s, missing from WASIFunctions", name, got)
		case !got.equal(want):
			t.Errorf("WASIFunctions[%q] = %s, wazero's is %s", name, want, got)
		}
	}
	for name := range WASIFunctions {
		if _, ok := defs[name]; !ok {
			t.Errorf("WASIFunctions has %s, which wazero does not implement", name)
		}
	}
}

func fromAPI(vs []api.ValueType) []ValueType {
	if len(vs) == 0 {
		return nil
	}
	out := make([]ValueType, len(vs))
	for i, v := range vs {
		out[i] = ValueType(v) // wazero's value types are the binary encoding
	}
	return out
}
