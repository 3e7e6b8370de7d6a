package wasmtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Plugin returns the example module at plugins/PATH, such as
// "pii-redactor/go/pii-redactor.wasm", which `make plugins` builds from source. It
// fails t if the module was not built.
func Plugin(t testing.TB, path string) []byte {
	t.Helper()
	_, here, _, _ := runtime.Caller(0) // internal/wasmtest/plugin.go, in the source tree
	b, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "plugins", path))
	if err != nil {
		t.Fatalf("%v: run `make plugins` first (it builds the example modules)", err)
	}
	return b
}
