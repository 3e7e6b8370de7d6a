package abi

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"

	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// FuzzValidate checks that Validate never panics, always answers with either info or
// an *Error with a code and a printable message, answers the same twice, and does not
// modify its input; and that a module it accepts is one wazero compiles, unless wazero
// refuses it for what Validate does not check: the types and indices in function
// bodies (Validate checks their encoding and structure), the types and indices of
// constant expressions and segments, and the contents of custom sections.
func FuzzValidate(f *testing.F) {
	goModule, _ := goStyle()
	for _, seed := range [][]byte{
		minimal(nil),
		goModule,
		specExample(),
		build(imp("cocoon", "log", []byte{wasmtest.I32, wasmtest.I32, wasmtest.I32}, nil), mem(1, 2, 3),
			export("memory", wasmtest.KindMemory, 0), marker, alloc, pre, post, chunk, end),
		build(memory, marker, alloc, chunk),
		build(memory, fn("cocoon_abi_v2", nil, nil), alloc, pre),
		minimal([]part{func(m *wasmtest.Module) { m.ImportMemory("env", "memory", 1) }}),
		minimal(nil, fn("cocoon_preprocess", i32x2, i64)),
		build(mem(5, 1, 2), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre),
		minimal(nil)[:40],
		// Function bodies: nesting, branches, a br_table, reads after a run of br_if.
		withCode(wasmtest.Nest(wasmtest.Loop, 3)),
		withCode([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.LocalGet, 0, 0x0e, 2, 0, 1, 0, wasmtest.End}),
		withCode([]byte{wasmtest.LocalGet, 0, wasmtest.If, wasmtest.Empty, 0x05, wasmtest.End}),
		withCode([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.I32Const, 0, wasmtest.BrIf, 0, wasmtest.I32Const, 1,
			wasmtest.BrIf, 0, wasmtest.LocalGet, 0, wasmtest.Drop, wasmtest.End}),
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		orig := bytes.Clone(wasm)
		info, err := Validate(wasm)
		if !bytes.Equal(wasm, orig) {
			t.Fatal("Validate modified its input")
		}
		var e *Error
		switch {
		case err == nil && info == nil:
			t.Fatal("Validate returned neither info nor error")
		case err != nil && info != nil:
			t.Fatalf("Validate returned info %+v and error %v", info, err)
		case err != nil && !errors.As(err, &e):
			t.Fatalf("Validate error %#v is not an *Error", err)
		case e != nil && (!slices.Contains(allCodes, e.Code) || e.Message == ""):
			t.Fatalf("Validate error has code %q and message %q", e.Code, e.Message)
		case e != nil && (!utf8.ValidString(e.Message) || strings.ContainsAny(e.Message, "\n\r\x00")):
			t.Fatalf("Validate error message is not safe to show: %q", e.Message)
		}
		info2, err2 := Validate(wasm)
		if !reflect.DeepEqual(info, info2) || !reflect.DeepEqual(err, err2) {
			t.Fatalf("Validate is not deterministic: %+v, %v then %+v, %v", info, err, info2, err2)
		}

		if err != nil {
			// Not given to wazero: it allocates in proportion to the counts it reads,
			// however few bytes back them, so a malformed module can exhaust memory.
			return
		}
		compiled, cerr := r.CompileModule(ctx, wasm)
		if cerr == nil {
			compiled.Close(ctx)
		} else if checkedByValidate.MatchString(cerr.Error()) {
			t.Fatalf("Validate accepts the module but wazero refuses it: %v", cerr)
		}
	})
}

// checkedByValidate matches the errors of wazero's decoder and validator about what
// Validate checks: the encoding of everything but function bodies and custom sections,
// section order, indices in the type, import, function, start and export sections, and
// memory limits.
var checkedByValidate = regexp.MustCompile(`^(` +
	`section (type|import|function|table|memory|global|export|start|element|data|data count): |` +
	`invalid (section order|magic number|version)|function and code section|code count|` +
	`import\[\d+\] (error decoding|\w+\[)|invalid import\[|invalid start function|` +
	`(unknown function|unknown global) for export|(memory|table) for export|` +
	`invalid function\[\d+\]: type section index|(min|max) \d+ pages)`)
