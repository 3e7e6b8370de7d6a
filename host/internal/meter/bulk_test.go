package meter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/internal/wasmbin"
	"github.com/tetratelabs/wazero/sys"
)

// bulkGuests returns an instance of testdata/bulk.wat as uploaded and one instrumented,
// with the same pattern in their memories.
func bulkGuests(t *testing.T) (orig, metered *guest) {
	t.Helper()
	rt := newRuntime(t, false)
	wasm := testModule(t, "bulk")
	orig, metered = instantiate(t, rt, wasm, nil), instantiate(t, rt, mustInstrument(t, wasm), nil)
	pattern := make([]byte, orig.mod.Memory().Size())
	for i := range pattern {
		pattern[i] = byte(i * 7 / 3)
	}
	for _, g := range []*guest{orig, metered} {
		g.mod.Memory().Write(0, pattern)
	}
	return orig, metered
}

// outcome calls fn with args and describes everything the call left: its results or
// the first line of its error, and a digest of the memory.
func (g *guest) outcome(fn string, args ...uint64) string {
	r, err := g.mod.ExportedFunction(fn).Call(g.ctx(context.Background()), args...)
	mem, _ := g.mod.Memory().Read(0, g.mod.Memory().Size())
	res := fmt.Sprint(r)
	if err != nil {
		res = firstLine(err)
	}
	return fmt.Sprintf("%s, memory %x", res, sha256.Sum256(mem))
}

// TestBulkSemantics: memory.fill, memory.copy and memory.init give the same results,
// memory and traps before and after instrumentation, below and above the chunk size,
// with overlaps both ways and regions that end out of bounds or wrap around 2^32.
func TestBulkSemantics(t *testing.T) {
	const size = 48 << 16
	tests := []struct {
		fn   string
		args []uint64
	}{
		{"fill", []uint64{0, 0xab, 100}},
		{"fill", []uint64{10, 1, ChunkBytes}},
		{"fill", []uint64{5, 2, ChunkBytes + 1}},
		{"fill", []uint64{1, 3, 5 * ChunkBytes / 2}},
		{"fill", []uint64{size, 4, 0}},                              // empty, at the end: valid
		{"fill", []uint64{size + 1, 4, 0}},                          // empty, past the end: traps
		{"fill", []uint64{size - 10, 5, 11}},                        // small, out of bounds
		{"fill", []uint64{size - ChunkBytes, 6, ChunkBytes + 1000}}, // chunked, out of bounds
		{"fill", []uint64{0xffff_fff0, 7, 2 * ChunkBytes}},          // wraps around 2^32
		{"copy", []uint64{0, 1000, 5 * ChunkBytes / 2}},             // overlapping, forwards
		{"copy", []uint64{1000, 0, 5 * ChunkBytes / 2}},             // overlapping, backwards
		{"copy", []uint64{2 * ChunkBytes, 0, ChunkBytes + 17}},      // disjoint
		{"copy", []uint64{3, 0, 100}},
		{"copy", []uint64{0, 3, 100}},
		{"copy", []uint64{0, size - ChunkBytes, ChunkBytes + 1}}, // source out of bounds
		{"copy", []uint64{size - ChunkBytes, 0, ChunkBytes + 1}}, // destination out of bounds
		{"copy", []uint64{0, 0xffff_ff00, 2 * ChunkBytes}},       // source wraps around
		{"init", []uint64{100, 0, 16}},
		{"init", []uint64{100, 10, 7}}, // past the segment's end
		{"init", []uint64{size - 8, 0, 16}},
		{"table_fill", []uint64{0, 2}},
		{"table_fill", []uint64{1, 2}},
		{"table_copy", []uint64{0, 1, 1}},
		{"table_copy", []uint64{1, 0, 2}},
		{"table_init", []uint64{0, 1, 2}},
		{"table_init", []uint64{0, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.fn, tt.args), func(t *testing.T) {
			orig, metered := bulkGuests(t)
			want, got := orig.outcome(tt.fn, tt.args...), metered.outcome(tt.fn, tt.args...)
			if got != want {
				t.Errorf("instrumented: %s\noriginal:     %s", got, want)
			}
		})
	}
}

// TestGrowthRefusals: memory.grow and table.grow keep their results, and the host
// hears of every refusal: by the memory's declared maximum, by the table's, and by
// its own table limit.
func TestGrowthRefusals(t *testing.T) {
	orig, metered := bulkGuests(t)
	metered.state.tableLimit = 5
	for _, step := range []struct {
		fn    string
		arg   uint64
		want  string // result as uploaded
		limit string // result with a table limit of 5, if it differs
	}{
		{"grow", 100, "[4294967295]", ""}, // past the declared maximum of 64 pages
		{"grow", 1, "[48]", ""},
		{"grow", 0, "[49]", ""},
		{"table_grow", 20, "[4294967295]", ""}, // past the declared maximum of 10
		{"table_grow", 2, "[2]", ""},
		{"table_grow", 2, "[4]", "[4294967295]"}, // past the host's limit of 5
		{"externref_grow", 3, "[0]", ""},
		{"table_size", 0, "[6]", "[4]"},
	} {
		var args []uint64
		if step.fn != "table_size" {
			args = []uint64{step.arg}
		}
		want := step.want
		if step.limit != "" {
			want = step.limit
		}
		if got, _, _ := strings.Cut(orig.outcome(step.fn, args...), ","); got != step.want {
			t.Fatalf("original %s(%d) = %s, want %s", step.fn, step.arg, got, step.want)
		}
		if got, _, _ := strings.Cut(metered.outcome(step.fn, args...), ","); got != want {
			t.Errorf("instrumented %s(%d) = %s, want %s", step.fn, step.arg, got, want)
		}
	}
	want := []string{"memory 100", "table 2+20", "table 4+2"}
	if !slices.Equal(metered.state.refusals, want) {
		t.Errorf("refusals the host heard of: %q, want %q", metered.state.refusals, want)
	}
}

// TestBulkCharges: bulk instructions cost fuel by the bytes they touch, so ticks come
// as often in time as in a loop of plain instructions, and a loop of fills, the
// issue's attack, stops at its deadline.
func TestBulkCharges(t *testing.T) {
	t.Run("a chunked fill ticks before every chunk", func(t *testing.T) {
		_, g := bulkGuests(t)
		g.outcome("fill", 0, 0, 3*ChunkBytes)
		if g.state.ticks < 3 {
			t.Errorf("a fill of 3 chunks ticked %d times, want 3 or more", g.state.ticks)
		}
	})
	t.Run("small fills are charged by their bytes", func(t *testing.T) {
		_, g := bulkGuests(t)
		// 1,000 fills of 64 KiB cost 4,096 points each: a tick every 3 fills.
		g.outcome("fill_loop", 64<<10, 1000)
		if want := 1000 / 3; g.state.ticks < want {
			t.Errorf("1,000 fills of 64 KiB ticked %d times, want %d or more", g.state.ticks, want)
		}
	})
	t.Run("a loop of large fills stops at its deadline", func(t *testing.T) {
		_, g := bulkGuests(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := g.mod.ExportedFunction("fill_loop").Call(g.ctx(ctx), 3*ChunkBytes, 1<<31)
		var exit *sys.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
			t.Fatalf("got %v, want the deadline's exit", err)
		}
		if d := time.Since(start); d > 5*time.Second { // about 50 ms; without the deadline, never
			t.Errorf("a 50 ms deadline stopped the loop after %s", d)
		}
	})
}

// TestCallDepth: the depth counts frames by their weight, comes back to zero through
// every way out of a function, and overflows past the limit. (A call that overflows
// leaves the depth where it was; the host never calls such an instance again, and the
// test takes a fresh one.)
func TestCallDepth(t *testing.T) {
	for _, tt := range []struct {
		fn       string
		n        uint64
		overflow bool
	}{
		{"deep", testMaxDepth - 1, false}, // n levels are n+1 frames of weight 1
		{"deep", testMaxDepth, true},
		{"heavy", testMaxDepth/3 - 1, false}, // 32 values held across each call: weight 3
		{"heavy", testMaxDepth / 3, true},
		{"leaves", 100 * testMaxDepth, false},
	} {
		_, g := bulkGuests(t)
		_, err := g.mod.ExportedFunction(tt.fn).Call(g.ctx(context.Background()), tt.n)
		if overflowed := errors.Is(err, errOverflow); overflowed != tt.overflow || err != nil && !overflowed {
			t.Errorf("%s(%d): %v, want overflow %v", tt.fn, tt.n, err, tt.overflow)
		}
	}
}

// TestStraightLineCost: a loop iteration costs its instructions, so a loop whose body
// is long straight-line code ticks as often in time as a tight loop. Before, every
// iteration cost 1 point, and a loop around a 100,000-instruction body ran 10,000
// iterations, seconds, between two ticks.
func TestStraightLineCost(t *testing.T) {
	const straight, iterations = 4000, 200
	// (func (export "run") (param $n i32) (loop (local.get 0) (drop) ...
	//   (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))))
	body := []byte{0, 0x03, 0x40}
	for range straight / 2 {
		body = append(body, 0x20, 0, 0x1a)
	}
	body = append(body, 0x20, 0, 0x41, 1, 0x6b, 0x22, 0, 0x0d, 0, 0x0b, 0x0b)
	wasm := module(
		section(wasmbin.SecType, 1, 0x60, 1, 0x7f, 0),
		section(3, 1, 0),
		section(wasmbin.SecExport, slices.Concat([]byte{1}, name("run"), []byte{0, 0})...),
		code(body),
	)
	g := instantiate(t, newRuntime(t, false), mustInstrument(t, wasm), nil)
	if _, err := g.mod.ExportedFunction("run").Call(g.ctx(context.Background()), iterations); err != nil {
		t.Fatal(err)
	}
	// An iteration is 4,006 instructions, charged at four metering points (one every
	// MaxStraightLine instructions): 504 points, a tick every 20 iterations.
	if want := 1 + iterations/20; g.state.ticks != want {
		t.Errorf("%d iterations of %d instructions ticked %d times, want %d", iterations, straight, g.state.ticks, want)
	}

	// With a quantum of 1 every metering point ticks: a straight body of 3,000
	// instructions has one at its entry and one after every MaxStraightLine.
	body = []byte{0}
	for range 1500 {
		body = append(body, 0x41, 0, 0x1a) // i32.const 0, drop
	}
	wasm = module(
		section(wasmbin.SecType, 1, 0x60, 0, 0),
		section(3, 1, 0),
		section(wasmbin.SecExport, slices.Concat([]byte{1}, name("run"), []byte{0, 0})...),
		code(append(body, 0x0b)),
	)
	g = instantiate(t, newRuntime(t, false), mustInstrument(t, wasm), nil)
	g.state.quantum = 1
	if _, err := g.mod.ExportedFunction("run").Call(g.ctx(context.Background())); err != nil {
		t.Fatal(err)
	}
	if want := 1 + 3000/MaxStraightLine; g.state.ticks != want {
		t.Errorf("3,000 straight instructions met %d metering points, want %d", g.state.ticks, want)
	}
}

// TestInstrumentKeepsInvalidBulk: bulk instructions whose immediates are not those of
// WebAssembly 2.0 are left alone for wazero to refuse, not turned into valid calls.
func TestInstrumentKeepsInvalidBulk(t *testing.T) {
	typ := section(wasmbin.SecType, 1, 0x60, 0, 0)
	mem := section(wasmbin.SecMemory, 1, 0, 1)
	for name, instr := range map[string][]byte{
		"memory.fill with memory index 1": {0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 11, 1},
		"memory.copy with memory index 1": {0x41, 0, 0x41, 0, 0x41, 0, 0xfc, 10, 0, 1},
		"memory.grow with memory index 1": {0x41, 0, 0x40, 1, 0x1a},
		"table.grow of a missing table":   {0xd0, 0x70, 0x41, 0, 0xfc, 15, 0, 0x1a},
	} {
		wasm := module(typ, section(3, 1, 0), mem, code(append(append([]byte{0}, instr...), 0x0b)))
		out := mustInstrument(t, wasm)
		if !bytes.Contains(out, instr) {
			t.Errorf("%s: the instruction %x was rewritten", name, instr)
		}
	}
}
