package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStorePersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := NewSandboxConfig()
	wasm := testdataWasm(t, "spec_example")

	s1, err := NewSandbox(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(ctx, s1, filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent uploads of the same bytes store and compile it once.
	var wg sync.WaitGroup
	mods, errs := make([]*Module, 4), make([]error, 4)
	for i := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mods[i], errs[i] = st.Put(ctx, wasm)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range mods[1:] {
		if m != mods[0] {
			t.Fatal("the same bytes gave two modules")
		}
	}
	if want := HashOf(wasm); mods[0].Hash != want || !strings.HasPrefix(want, "sha256:") || len(want) != 7+64 {
		t.Fatalf("hash = %s, want %s", mods[0].Hash, want)
	}
	if _, err := st.Put(ctx, testdataWasm(t, "wrong_abi")); err == nil {
		t.Fatal("a module for ABI v2 was stored")
	}
	s1.Close(ctx)

	s2, err := NewSandbox(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	st2, err := OpenStore(ctx, s2, filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	list := st2.List()
	if len(list) != 1 || list[0].Hash != mods[0].Hash {
		t.Fatalf("after restart the store holds %v, want only %s", list, mods[0].Hash)
	}
	p, err := s2.NewPipeline(PipelineSpec{Pre: []ModuleSpec{{Module: list[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(ctx, []byte(testRequest), storyteller, nil); err != nil {
		t.Fatalf("a module reloaded after restart does not run: %v", err)
	}
	if err := st2.Delete(ctx, list[0].Hash); err != nil {
		t.Fatal(err)
	}
	if _, ok := st2.Get(list[0].Hash); ok {
		t.Fatal("deleted module still served")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "modules")); len(entries) != 0 {
		t.Fatalf("deleted module still on disk: %v", entries)
	}
}

func TestStoreRefusesAlteredFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newTestSandbox(t)
	st, err := OpenStore(ctx, s, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Put(ctx, testdataWasm(t, "spec_example"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.TrimPrefix(m.Hash, "sha256:")+".wasm")
	if err := os.WriteFile(path, testdataWasm(t, "hold"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenStore(ctx, s, dir)
	if err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("err = %v, want the altered file refused", err)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Fatalf("a storage fault came back as a module error: %v", e)
	}
}

// TestStoreUploadsShareThePool checks that uploads of different modules at once go
// through the compile pool: with its one place taken, an upload is refused with
// CodeCompileBusy and nothing is stored. (TestStorePersistsAcrossRestart checks that
// uploads of the same bytes at once share one compile instead.)
func TestStoreUploadsShareThePool(t *testing.T) {
	ctx := context.Background()
	s := oneSlotSandbox(t)
	st, err := OpenStore(ctx, s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	release := takePlace(t, s) // another upload compiling
	_, err = st.Put(ctx, testdataWasm(t, "spec_example"))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeCompileBusy || e.RetryAfter < 1 {
		t.Fatalf("Put with the pool full = %v, want compile_busy", err)
	}
	if len(st.List()) != 0 {
		t.Fatal("a refused upload was stored")
	}
	release()
	if _, err := st.Put(ctx, testdataWasm(t, "spec_example")); err != nil {
		t.Fatalf("Put with the pool free: %v", err)
	}
}

// TestOpenStoreWaitsForThePool checks that start-up compiles wait for a place in the
// compile pool rather than fail.
func TestOpenStoreWaitsForThePool(t *testing.T) {
	ctx := context.Background()
	s := oneSlotSandbox(t)
	dir := t.TempDir()
	st, err := OpenStore(ctx, s, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, testdataWasm(t, "post_only")); err != nil {
		t.Fatal(err)
	}
	release := takePlace(t, s)
	opened := make(chan error, 1)
	go func() {
		_, err := OpenStore(ctx, s, dir)
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("OpenStore returned %v while the pool was full", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := receive(t, opened, "OpenStore once the pool had room"); err != nil {
		t.Fatal(err)
	}
}
