package meter

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero/api"

	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// TestInstrumentDetached: an instance of the detached form, initialized as the host
// does (the data segments written, then the exported start function called), computes
// what an instance of the module computes, for data segments with and without a data
// count section, passive segments, and a start function that sets a global.
func TestInstrumentDetached(t *testing.T) {
	rt := newRuntime(t, false)
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		data     int  // active data segments taken out
		hasStart bool // a start function exported
		memory   bool
		calls    []string
	}{
		{"loops", 1, false, true, []string{"sum_memory 8"}},
		{"bulk", 0, false, true, []string{"init 0 0 16", "init 0 0 17"}},
		{"shift", 0, true, false, []string{"run"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			orig := testModule(t, tt.name)
			d, err := InstrumentDetached(orig)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Data) != tt.data || d.HasStart != tt.hasStart {
				t.Fatalf("%d data segments, start %v; want %d, %v", len(d.Data), d.HasStart, tt.data, tt.hasStart)
			}
			want := instantiate(t, rt, orig, nil)
			got := instantiate(t, rt, d.Wasm, nil)
			if mem := got.mod.Memory(); tt.memory {
				if b, _ := mem.Read(0, mem.Size()); !bytes.Equal(b, make([]byte, mem.Size())) {
					t.Fatal("instantiating the detached form wrote memory")
				}
				for _, seg := range d.Data {
					mem.Write(seg.Offset, seg.Bytes)
				}
			}
			if start := got.mod.ExportedFunction(StartExport); (start != nil) != tt.hasStart {
				t.Fatalf("start exported: %v, want %v", start != nil, tt.hasStart)
			} else if start != nil {
				if _, err := start.Call(got.ctx(ctx)); err != nil {
					t.Fatal(err)
				}
			}
			for _, g := range d.Globals {
				if _, ok := got.mod.ExportedGlobal(GlobalExport(g.Index)).(api.MutableGlobal); !ok {
					t.Errorf("mutable global %d is not exported as %s", g.Index, GlobalExport(g.Index))
				}
			}
			for _, call := range tt.calls {
				if w, g := callLine(want, call), callLine(got, call); w != g {
					t.Errorf("%s: module %s, detached form %s", call, w, g)
				}
			}
			if mem := want.mod.Memory(); tt.memory {
				w, _ := mem.Read(0, mem.Size())
				g, _ := got.mod.Memory().Read(0, got.mod.Memory().Size())
				if !bytes.Equal(w, g) {
					t.Error("the memories differ")
				}
			}
		})
	}
}

// callLine calls the export named by the first word of line with the numbers after it,
// and returns its results or the first line of its error.
func callLine(g *guest, line string) string {
	fields := strings.Fields(line)
	args := make([]uint64, len(fields)-1)
	for i, f := range fields[1:] {
		n, _ := strconv.ParseUint(f, 10, 64)
		args[i] = n
	}
	r, err := g.mod.ExportedFunction(fields[0]).Call(g.ctx(context.Background()), args...)
	if err != nil {
		return "error: " + firstLine(err)
	}
	return fmt.Sprint(r)
}

// dataForMemory1 is an ABI module with an active data segment for memory 1, which it
// does not have.
func dataForMemory1() []byte {
	var m wasmtest.Module
	m.ABI()
	return append(m.Bytes(), wasmtest.Section(wasmtest.SecData,
		wasmtest.Vec([]byte{2, 1, wasmtest.I32Const, 0, wasmtest.End, 2, 'h', 'i'}))...)
}

// TestInstrumentDetachedRefusesOtherMemories: an active data segment for memory 1,
// which wazero refuses, is refused by InstrumentDetached itself, not taken out and
// written to memory 0, whether or not a validator ran before it.
func TestInstrumentDetachedRefusesOtherMemories(t *testing.T) {
	if d, err := InstrumentDetached(dataForMemory1()); err == nil || !strings.Contains(err.Error(), "memory 1") {
		t.Fatalf("InstrumentDetached = %v segments, %v; want an error naming memory 1", d != nil && len(d.Data) > 0, err)
	}
}
