package fstrace_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/cocoonhost/cocoon/internal/fstrace"
)

// The helper process is this test binary with helperEnv naming a scenario and
// helperFileEnv the file it works on.
const (
	helperEnv     = "FSTRACE_HELPER"
	helperFileEnv = "FSTRACE_FILE"
)

// TestHelperProcess runs a scenario of file calls when helperEnv is set.
func TestHelperProcess(t *testing.T) {
	scenario := os.Getenv(helperEnv)
	if scenario == "" {
		t.Skip("the helper process of the fstrace tests")
	}
	f, err := os.OpenFile(os.Getenv(helperFileEnv), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fail(err)
	}
	must := func(_ int, err error) {
		if err != nil {
			fail(err)
		}
	}
	switch scenario {
	case "sync-then-write":
		must(f.WriteAt([]byte("hello"), 0))
		must(0, syscall.Fdatasync(int(f.Fd())))
		must(f.WriteAt([]byte(" world, lost"), 5))
		must(0, f.Truncate(3))
	case "write-on-another-thread":
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread() // a thread of its own, made by clone
			must(f.WriteAt([]byte("from a thread"), 0))
			close(done)
		}()
		<-done
		must(0, f.Sync())
		must(f.Write([]byte("front"))) // write(2) at the file position, 0
		must(0, f.Sync())
	case "writev":
		must(0, f.Truncate(0))
		if _, err := f.Seek(0, 0); err != nil {
			fail(err)
		}
		must(writev(f, []byte("vec"), []byte("tored")))
		must(0, f.Sync())
	}
	fmt.Println("done")
	os.Exit(0)
}

func fail(err error) {
	fmt.Println("error:", err)
	os.Exit(1)
}

// writev writes bufs to f with writev(2), which the recorder does not replay.
func writev(f *os.File, bufs ...[]byte) (int, error) {
	iov := make([]syscall.Iovec, len(bufs))
	for i, b := range bufs {
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	n, _, errno := syscall.Syscall(syscall.SYS_WRITEV, f.Fd(), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// run traces the helper's scenario on a file in a new directory holding initial (no
// file if nil) and returns the trace, the file's path and what the helper printed.
func run(t *testing.T, scenario string, initial []byte, killAt func(fstrace.Call) bool) (fstrace.Trace, string, string, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "file")
	if initial != nil {
		if err := os.WriteFile(path, initial, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	p, err := fstrace.Start(os.Args[0], fstrace.Options{
		Args:   []string{"-test.run=^TestHelperProcess$"},
		Env:    append(os.Environ(), helperEnv+"="+scenario, helperFileEnv+"="+path),
		Stdout: &out,
		Record: func(p string) bool { return p == path },
		KillAt: killAt,
	})
	if errors.Is(err, fstrace.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	tr, err := p.Wait()
	return tr, path, out.String(), err
}

func TestPowerLossKeepsWhatWasSynced(t *testing.T) {
	tr, path, out, err := run(t, "sync-then-write", []byte("0123456789abcdef"), nil)
	if err != nil || !strings.Contains(out, "done") {
		t.Fatalf("helper: %v, %q", err, out)
	}
	got, synced := tr.PowerLoss(path, []byte("0123456789abcdef"))
	if want := "hello56789abcdef"; !synced || string(got) != want {
		t.Errorf("after a power cut: %q (synced %t), want %q", got, synced, want)
	}
	disk, _ := os.ReadFile(path)
	if string(disk) != "hel" {
		t.Errorf("the file as the page cache has it: %q, want %q", disk, "hel")
	}
	if len(tr.Touched(filepath.Dir(path))) == 0 || len(tr.Touched(path+"x")) != 0 {
		t.Error("Touched does not find the calls on the file's directory, or finds calls on another name")
	}
	var kinds []string
	for _, c := range tr.Touched(path) {
		kinds = append(kinds, c.Name)
	}
	if want := "openat pwrite64 fdatasync pwrite64 ftruncate"; !strings.Contains(strings.Join(kinds, " "), want) {
		t.Errorf("calls on the file %v, want %q among them", kinds, want)
	}
}

func TestPowerLossFollowsEveryThread(t *testing.T) {
	tr, path, out, err := run(t, "write-on-another-thread", nil, nil)
	if err != nil || !strings.Contains(out, "done") {
		t.Fatalf("helper: %v, %q", err, out)
	}
	if got, _ := tr.PowerLoss(path, nil); string(got) != "fronta thread" {
		t.Errorf("after a power cut: %q", got)
	}
	tids := map[int]bool{}
	for _, c := range tr.Touched(path) {
		if c.Kind == fstrace.Write {
			tids[c.TID] = true
		}
	}
	if len(tids) != 2 {
		t.Errorf("writes came from threads %v, want two", tids)
	}
}

func TestKillAtStopsBeforeTheCall(t *testing.T) {
	tr, path, out, err := run(t, "sync-then-write", []byte("old"), func(c fstrace.Call) bool { return c.Kind == fstrace.Sync })
	if err != nil || strings.Contains(out, "done") {
		t.Fatalf("helper: %v, %q; want it killed", err, out)
	}
	got, synced := tr.PowerLoss(path, []byte("old"))
	if synced || string(got) != "old" {
		t.Errorf("killed before its first sync, the file is %q (synced %t), want the old content", got, synced)
	}
	if disk, _ := os.ReadFile(path); string(disk) != "hello" {
		t.Errorf("the page cache has %q, want the unsynced write", disk)
	}
}

func TestUnrecordableWrite(t *testing.T) {
	_, _, out, err := run(t, "writev", nil, nil)
	if !errors.Is(err, fstrace.ErrUnrecordable) || !strings.Contains(err.Error(), "writev") || !strings.Contains(out, "done") {
		t.Errorf("writev of a recorded file: %v (%q), want ErrUnrecordable", err, out)
	}
}
