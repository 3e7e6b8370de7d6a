package abi

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// TestCodeStats checks every count of a function whose control flow was followed by
// hand, step by step as flow's comment describes it.
func TestCodeStats(t *testing.T) {
	code := []byte{
		wasmtest.Block, wasmtest.Empty,
		wasmtest.Loop, wasmtest.Empty,
		wasmtest.LocalGet, 0,
		wasmtest.If, wasmtest.Empty,
		wasmtest.Call, 0,
		0x05, // else
		0x01, // nop
		wasmtest.End,
		wasmtest.LocalGet, 0,
		wasmtest.BrIf, 0, // back to the loop's start
		wasmtest.End,
		wasmtest.LocalGet, 0, // read two blocks below the last join
		0x0e, 2, 0, 1, 0, // br_table to the block, the function's end, and the block
		wasmtest.End,
	}
	wasm := withBody(func(m *wasmtest.Module) { m.FuncBody(i32, nil, localDecls(2), code) })
	compile(t, wasm)
	info, err := Validate(wasm)
	if err != nil {
		t.Fatal(err)
	}
	want := FuncStats{
		Bytes:        3 + len(code) + 1, // local declarations, code, end
		Instructions: 15,
		Calls:        1,
		Branches:     1 + 4 + 1 + 1 + 1 + 3, // block, loop, if, else, br_if, 3 labels
		Labels:       3,
		Locals:       3,
		Depth:        3,
		// The entry's time check: blocks at depths 1, 1, 1 and edges from 0, 0, 1,
		// 1 (5). Loop: edge 1, block 2; its check: edges 2, 2, 3, 3, blocks 3, 3, 3
		// (27). if: edges 3, 3, blocks 4, 4; else: edge 4; end: edge 4, block 4 (53).
		// br_if: edges 4 (back) and 4, block 5 (66). The loop's end: edge 5, block 6
		// (77). br_table: per label an edge from 6 and a block at 7 (13 each), and an
		// edge from 7 into the block twice (130). The block's end joins them: block 8.
		DominatorWork: 138,
		// The one read past single-predecessor blocks: local.get after the loop,
		// two blocks below the join that ended the if.
		ReadWork: 2,
	}
	want.LocalBranches = int64(want.Locals * want.Branches)
	// The ABI's three functions are smaller than function 3 in every count.
	if got := info.Code.Max; got != want {
		t.Errorf("Max = %+v\nwant  %+v", got, want)
	}
	if info.Code.Functions != 4 || info.Code.Globals != 0 {
		t.Errorf("Functions, Globals = %d, %d, want 4, 0", info.Code.Functions, info.Code.Globals)
	}
	if tot := info.Code.Total; tot.Instructions != want.Instructions+5 || tot.Bytes != want.Bytes+2+4+4 {
		t.Errorf("Total = %+v: want function 3 plus the ABI's 5 instructions in 11 bytes", tot)
	}
}

// realGuests returns the example modules built by `make plugins`.
func realGuests(t testing.TB) map[string][]byte {
	paths, _ := filepath.Glob("../plugins/*/*/*.wasm")
	if len(paths) == 0 {
		t.Skip("no plugins/*/*/*.wasm: run `make plugins`")
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	return out
}

// TestRealGuestsHaveMargin checks that the example modules, Go and C, validate and
// stay at most a quarter of every limit on function bodies: the margin RATIONALE.md
// promises.
func TestRealGuestsHaveMargin(t *testing.T) {
	for path, wasm := range realGuests(t) {
		info, err := Validate(wasm)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m := info.Code.Max
		for _, c := range []struct {
			what       string
			got, limit int64
		}{
			{"function bytes", int64(m.Bytes), MaxFunctionBytes},
			{"nesting depth", int64(m.Depth), MaxNestingDepth},
			{"branches", int64(m.Branches), MaxBranches},
			{"locals", int64(m.Locals), MaxFunctionLocals},
			{"locals times branches", m.LocalBranches, MaxLocalBranches},
			{"read work", m.ReadWork, MaxReadWork},
		} {
			if c.got*4 > c.limit {
				t.Errorf("%s: %s %d is more than a quarter of the limit %d", path, c.what, c.got, c.limit)
			}
		}
	}
}

// attacks are the modules of issue 10's item 3, and more of the same kind.
var attacks = []struct {
	name string
	wasm func() []byte
	code ErrorCode
}{
	{"8,000 nested loops", func() []byte { return withCode(wasmtest.Nest(wasmtest.Loop, 8000)) }, ErrTooManyBranches},
	{"100,000 nested blocks", func() []byte { return withCode(wasmtest.Nest(wasmtest.Block, 100_000)) }, ErrFunctionTooLarge},
	{"5,000 nested blocks", func() []byte { return withCode(wasmtest.Nest(wasmtest.Block, 5000)) }, ErrNestingTooDeep},
	{"one 2 MB function", func() []byte { return withCode(wasmtest.Sequence([]byte{wasmtest.Call, 0}, 2<<20)) }, ErrFunctionTooLarge},
	{"one 15 MB function", func() []byte { return withCode(wasmtest.Sequence([]byte{wasmtest.Call, 0}, 15<<20)) }, ErrFunctionTooLarge},
	{"50,000 blocks one after the other", func() []byte {
		return withCode(bytes.Repeat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.End}, 50_000))
	}, ErrTooManyBranches},
	{"a br_table of 100,000 labels", func() []byte {
		return withCode(slices.Concat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.LocalGet, 0, 0x0e}, wasmtest.U32(100_000),
			make([]byte, 100_001), []byte{wasmtest.End}))
	}, ErrTooManyBranches},
}

// TestAttacksRefusedQuickly validates each attack module, which costs seconds to
// minutes of compiling and gigabytes of memory without the limits: each is refused
// with its code, in much less than a second (generously bounded for a loaded machine;
// BenchmarkValidateAttacks measures it).
func TestAttacksRefusedQuickly(t *testing.T) {
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			wasm := a.wasm()
			start := time.Now()
			_, err := Validate(wasm)
			took := time.Since(start)
			e, ok := err.(*Error)
			if !ok || e.Code != a.code {
				t.Fatalf("Validate = %v, want code %s", err, a.code)
			}
			if took > time.Second {
				t.Errorf("refusing the %d-byte module took %v", len(wasm), took)
			}
		})
	}
}

// BenchmarkValidateAttacks measures how long each attack module takes to refuse,
// against validating the 4 MiB Go guest in the same run (x-go-guest).
//
//	go test -run '^$' -bench ValidateAttacks ./abi/
func BenchmarkValidateAttacks(b *testing.B) {
	goGuest, err := os.ReadFile("../plugins/pii-redactor/go/pii-redactor.wasm")
	if err != nil {
		b.Skip("run `make plugins`")
	}
	var base float64
	run := func(name string, wasm []byte) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(wasm)))
			for b.Loop() {
				Validate(wasm)
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if base == 0 {
				base = ns
			}
			b.ReportMetric(ns/base, "x-go-guest")
		})
	}
	run("go-guest", goGuest)
	for _, a := range attacks {
		run(a.name, a.wasm())
	}
}
