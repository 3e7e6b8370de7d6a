package meter

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/instrumented.sha256 from the modules built here")

// goldenFile maps the sha256 of a module to those of what Instrument and
// InstrumentDetached make of it. It was written by the meter's own reader, before the
// meter moved to internal/wasmbin, so TestGolden proves that the move changed nothing
// that runs. Modules are keyed by their hash, not their path: a plugin another
// toolchain builds differently is simply not checked.
const goldenFile = "testdata/instrumented.sha256"

// TestGolden instruments every module the repository builds (the example plugins,
// host/testdata, the hostile suite and this package's testdata) and compares the
// results with goldenFile.
func TestGolden(t *testing.T) {
	var modules [][]byte
	for name := range testdataWasm {
		modules = append(modules, testModule(t, name))
	}
	paths := realModules(t)
	hostile, err := filepath.Glob("../../testdata/hostile/*.wasm")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append(paths, hostile...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		modules = append(modules, b)
	}
	got := map[string]string{}
	for _, wasm := range modules {
		got[hashHex(wasm)] = instrumentedHashes(wasm)
	}
	if *updateGolden {
		var lines []string
		for in, out := range got {
			lines = append(lines, in+" "+out+"\n")
		}
		slices.Sort(lines)
		if err := os.WriteFile(goldenFile, []byte(strings.Join(lines, "")), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readGolden(t)
	checked := 0
	for in, out := range got {
		w, ok := want[in]
		if !ok {
			continue
		}
		checked++
		if out != w {
			t.Errorf("module %s: instrumented to %s, golden %s", in[:12], out, w)
		}
	}
	// This package's testdata is committed, so at least those are always checked.
	if checked < len(testdataWasm) {
		t.Fatalf("checked %d modules against %s, fewer than the %d of testdata", checked, goldenFile, len(testdataWasm))
	}
	t.Logf("%d of %d modules checked against %s", checked, len(got), goldenFile)
}

// instrumentedHashes returns the sha256 of Instrument's result and of everything
// InstrumentDetached returns, or of the error text when either fails (a refusal must
// stay a refusal).
func instrumentedHashes(wasm []byte) string {
	out, err := Instrument(wasm)
	if err != nil {
		out = []byte("error")
	}
	d, err := InstrumentDetached(wasm)
	var detached []byte
	if err != nil {
		detached = []byte("error")
	} else {
		detached = append(detached, d.Wasm...)
		for _, s := range d.Data {
			detached = binary.LittleEndian.AppendUint32(detached, s.Offset)
			detached = binary.LittleEndian.AppendUint64(detached, uint64(len(s.Bytes)))
			detached = append(detached, s.Bytes...)
		}
		for _, g := range d.Globals {
			detached = binary.LittleEndian.AppendUint32(append(detached, g.Type), g.Index)
		}
		detached = fmt.Appendf(detached, "%v %v", d.HasStart, d.ChangesTables)
	}
	return hashHex(out) + " " + hashHex(detached)
}

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func readGolden(t *testing.T) map[string]string {
	f, err := os.Open(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		in, out, ok := strings.Cut(s.Text(), " ")
		if !ok {
			t.Fatalf("%s: bad line %q", goldenFile, s.Text())
		}
		want[in] = out
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return want
}
