package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// TestValidateAttackModules checks that `cocoon validate` refuses the modules of issue
// 10's item 3 with the precise message an upload gets.
func TestValidateAttackModules(t *testing.T) {
	dir := t.TempDir()
	module := func(name string, add func(m *wasmtest.Module)) string {
		m := &wasmtest.Module{}
		m.ABI()
		add(m)
		path := filepath.Join(dir, name+".wasm")
		if err := os.WriteFile(path, m.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	i32 := []byte{wasmtest.I32}
	for _, tt := range []struct {
		name string
		add  func(m *wasmtest.Module)
		want string
	}{
		{"nested-loops", func(m *wasmtest.Module) { m.FuncBody(i32, nil, nil, wasmtest.Nest(wasmtest.Loop, 8000)) },
			"invalid: function 3 has more than 12000 blocks and branches (block, if, else, br_if and each br_table label count 1, loop 4); the limit is 12000 per function: split it\n"},
		{"big-function", func(m *wasmtest.Module) {
			m.FuncBody(nil, nil, nil, wasmtest.Sequence([]byte{wasmtest.Call, 0}, 2<<20))
		}, "invalid: function 3 is 2097154 bytes; the limit is 262144 bytes per function: split it\n"},
		{"much-code", func(m *wasmtest.Module) {
			for range 60 {
				m.FuncBody(nil, nil, nil, wasmtest.Sequence([]byte{wasmtest.Call, 0}, 250<<10))
			}
		}, "invalid: compiling the module would take an estimated %d MiB of memory, most of it for its 7680000 calls; the limit is 384 MiB\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := module(tt.name, tt.add)
			var stdout, stderr bytes.Buffer
			if code := runCommand([]string{"validate", path}, strings.NewReader(""), &stdout, &stderr); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			want := path + ": " + tt.want
			if strings.Contains(want, "%d") { // the estimate's figure
				b, _ := os.ReadFile(path)
				info, err := abi.Validate(b)
				if err != nil {
					t.Fatal(err)
				}
				want = fmt.Sprintf(want, host.EstimateCompile(len(b), info.Code).Memory>>20)
			}
			if stdout.String() != want {
				t.Errorf("stdout %q\nwant   %q", stdout.String(), want)
			}
		})
	}
}

// TestValidateListsEachImportOnce: a Go module imports fd_write twice; validate names it
// once.
func TestValidateListsEachImportOnce(t *testing.T) {
	const module = "../../plugins/pii-redactor/go/pii-redactor.wasm"
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	code, stdout, stderr := cocoon(t, "", "validate", module)
	if code != 0 || strings.Count(stdout, "wasi_snapshot_preview1.fd_write") != 1 || !strings.Contains(stdout, "cocoon.log") {
		t.Errorf("exit %d, stdout %q, stderr %q; want fd_write listed once", code, stdout, stderr)
	}
}
