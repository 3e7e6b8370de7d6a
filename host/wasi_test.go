package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// wasiGuest is an instance of testdata/wasi.wat, which exports every WASI function
// under its own name, for calling them with chosen arguments.
type wasiGuest struct {
	t    *testing.T
	sess *Session
	inst *instance
}

func newWASIGuest(t *testing.T) *wasiGuest {
	t.Helper()
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "wasi")}}})
	sess := p.NewSession(context.Background())
	t.Cleanup(sess.Close)
	inst, err := sess.instance(StagePre, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &wasiGuest{t: t, sess: sess, inst: inst}
}

// outside is an address past the end of the guest's memory of one page.
const outside = abi.PageSize - 2

// call calls the WASI function name as the module would, and returns its errno.
func (g *wasiGuest) call(name string, args ...uint64) wasiErrno {
	g.t.Helper()
	r, err := g.callErr(name, args...)
	if err != nil {
		g.t.Fatalf("%s%v: %v", name, args, err)
	}
	return wasiErrno(r)
}

func (g *wasiGuest) callErr(name string, args ...uint64) (uint64, error) {
	var r []uint64
	err := g.inst.run(time.Second, func(ctx context.Context) (err error) {
		r, err = g.inst.mod.ExportedFunction(name).Call(ctx, args...)
		return err
	})
	if err != nil || len(r) == 0 {
		return 0, err
	}
	return r[0], nil
}

func (g *wasiGuest) read(ptr, n uint32) []byte {
	b, ok := g.inst.mod.Memory().Read(ptr, n)
	if !ok {
		g.t.Fatalf("read %d bytes at %d", n, ptr)
	}
	return append([]byte(nil), b...)
}

func (g *wasiGuest) write(ptr uint32, b []byte) { g.inst.mod.Memory().Write(ptr, b) }

func (g *wasiGuest) u32(ptr uint32) uint32 { return binary.LittleEndian.Uint32(g.read(ptr, 4)) }
func (g *wasiGuest) u64(ptr uint32) uint64 { return binary.LittleEndian.Uint64(g.read(ptr, 8)) }

func expectErrno(t *testing.T, what string, got, want wasiErrno) {
	t.Helper()
	if got != want {
		t.Errorf("%s = errno %d, want %d", what, got, want)
	}
}

// TestWASIFunctionsImplemented: the host's WASI serves exactly abi.WASIFunctions, the
// one list of what modules may import.
func TestWASIFunctionsImplemented(t *testing.T) {
	for name := range wasiFuncs {
		if _, ok := abi.WASIFunctions[name]; !ok {
			t.Errorf("wasiFuncs implements %s, which abi.WASIFunctions does not list", name)
		}
	}
	g := newWASIGuest(t) // instantiating it links every function of the list
	for name := range abi.WASIFunctions {
		if g.inst.mod.ExportedFunction(name) == nil {
			t.Errorf("testdata/wasi.wat does not call %s", name)
		}
	}
}

func TestWASIArgsAndEnviron(t *testing.T) {
	g := newWASIGuest(t)
	for _, prefix := range []string{"args", "environ"} {
		g.write(100, bytes.Repeat([]byte{0xff}, 8))
		expectErrno(t, prefix+"_sizes_get", g.call(prefix+"_sizes_get", 100, 104), errnoSuccess)
		if count, size := g.u32(100), g.u32(104); count != 0 || size != 0 {
			t.Errorf("%s_sizes_get: %d entries of %d bytes, want none", prefix, count, size)
		}
		expectErrno(t, prefix+"_get", g.call(prefix+"_get", 200, 300), errnoSuccess)
		g.write(100, bytes.Repeat([]byte{0xff}, 4))
		expectErrno(t, prefix+"_sizes_get outside memory", g.call(prefix+"_sizes_get", 100, outside), errnoFault)
		if g.u32(100) != 0xffff_ffff {
			t.Errorf("%s_sizes_get wrote the count although it failed", prefix)
		}
	}
}

func TestWASIClocks(t *testing.T) {
	g := newWASIGuest(t)
	expectErrno(t, "clock_time_get outside memory", g.call("clock_time_get", clockRealtime, 0, outside), errnoFault)
	epoch := uint64(abi.ClockEpochUnix * int64(time.Second))
	for i, want := range []uint64{epoch, epoch + uint64(abi.ClockStep), epoch + 2*uint64(abi.ClockStep)} {
		expectErrno(t, "clock_time_get", g.call("clock_time_get", clockRealtime, 0, 64), errnoSuccess)
		if got := g.u64(64); got != want {
			t.Errorf("realtime reading %d = %d, want %d (a failed reading must not advance the clock)", i, got, want)
		}
	}
	for i := range 3 {
		g.call("clock_time_get", clockMonotonic, 0, 64)
		if got, want := g.u64(64), uint64(i)*uint64(abi.ClockStep); got != want {
			t.Errorf("monotonic reading %d = %d, want %d", i, got, want)
		}
	}
	for _, id := range []uint64{2, 3, 100} { // the CPU-time clocks are not provided
		expectErrno(t, "clock_time_get of another clock", g.call("clock_time_get", id, 0, 64), errnoInval)
		expectErrno(t, "clock_res_get of another clock", g.call("clock_res_get", id, 64), errnoInval)
	}
	expectErrno(t, "clock_res_get", g.call("clock_res_get", clockMonotonic, 64), errnoSuccess)
	if got := g.u64(64); got != uint64(abi.ClockResolution) {
		t.Errorf("resolution = %d, want %d", got, abi.ClockResolution)
	}
	expectErrno(t, "clock_res_get outside memory", g.call("clock_res_get", clockRealtime, outside), errnoFault)
}

// TestWASIRandom: random_get gives the ChaCha8 stream of abi.RandomSeed, the same bytes
// whether read at once or in the chunks between two deadline checks.
func TestWASIRandom(t *testing.T) {
	g := newWASIGuest(t)
	expectErrno(t, "random_get outside memory", g.call("random_get", outside, 16), errnoFault)
	expectErrno(t, "random_get past the end of memory", g.call("random_get", 0, abi.PageSize+1), errnoFault)
	stream := make([]byte, 3*abi.KiB)
	rand.NewChaCha8(abi.RandomSeed()).Read(stream)
	g.call("random_get", 0, 1000)
	g.call("random_get", 1000, 3*abi.KiB-1000)
	if got := g.read(0, 3*abi.KiB); !bytes.Equal(got, stream) {
		t.Error("random_get's bytes are not the ChaCha8 stream of abi.RandomSeed")
	}

	// A buffer of several chunks: the same bytes as one read of the stream.
	g = newWASIGuest(t)
	g.inst.mod.Memory().Grow(3)
	big := make([]byte, 2*randomChunk+17)
	rand.NewChaCha8(abi.RandomSeed()).Read(big)
	g.call("random_get", 0, uint64(len(big)))
	if !bytes.Equal(g.read(0, uint32(len(big))), big) {
		t.Error("random_get in chunks gives other bytes than one read of the stream")
	}
}

func TestWASIFdWrite(t *testing.T) {
	g := newWASIGuest(t)
	g.write(0, []byte("hello, world\n"))
	// Two iovecs at 100: {0, 7} "hello, " and {7, 6} "world\n"; nwritten at 200.
	g.write(100, []byte{0, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0, 6, 0, 0, 0})
	expectErrno(t, "fd_write to stdout", g.call("fd_write", 1, 100, 2, 200), errnoSuccess)
	expectErrno(t, "fd_write to stderr", g.call("fd_write", 2, 100, 1, 200), errnoSuccess)
	if g.u32(200) != 7 {
		t.Errorf("nwritten = %d, want 7", g.u32(200))
	}
	logs := g.sess.Logs()
	if len(logs) != 2 || logs[0].Source != "stdout" || logs[0].Level != LevelInfo || logs[0].Message != "hello, world" ||
		logs[1].Source != "stderr" || logs[1].Level != LevelWarn || logs[1].Message != "hello, " {
		t.Errorf("logs = %+v, want one record per write", logs)
	}
	// An iovec outside memory: EFAULT and nothing logged.
	g.write(300, []byte{0, 0, 0, 0, 1, 0, 0, 0, 0xf0, 0xff, 0, 0, 0x20, 0, 0, 0})
	for _, tt := range []struct {
		what       string
		args       []uint64
		want       wasiErrno
		recordsNow int
	}{
		{"a buffer outside memory", []uint64{1, 300, 2, 200}, errnoFault, 2},
		{"the iovecs outside memory", []uint64{1, outside, 1, 200}, errnoFault, 2},
		{"nwritten outside memory", []uint64{1, 100, 1, outside}, errnoFault, 2},
		{"more than 1,024 iovecs", []uint64{1, 100, maxIOVecs + 1, 200}, errnoInval, 2},
		{"stdin", []uint64{0, 100, 1, 200}, errnoBadf, 2},
		{"a descriptor that is not open", []uint64{3, 100, 1, 200}, errnoBadf, 2},
	} {
		expectErrno(t, "fd_write with "+tt.what, g.call("fd_write", tt.args...), tt.want)
		if n := len(g.sess.Logs()); n != tt.recordsNow {
			t.Errorf("fd_write with %s left %d log records, want %d", tt.what, n, tt.recordsNow)
		}
	}
}

func TestWASIFdRead(t *testing.T) {
	g := newWASIGuest(t)
	g.write(100, []byte{0, 0, 0, 0, 16, 0, 0, 0})
	g.write(200, []byte{9, 9, 9, 9})
	expectErrno(t, "fd_read of stdin", g.call("fd_read", 0, 100, 1, 200), errnoSuccess)
	if g.u32(200) != 0 {
		t.Errorf("fd_read of stdin read %d bytes, want 0 (end of file)", g.u32(200))
	}
	expectErrno(t, "fd_read of stdout", g.call("fd_read", 1, 100, 1, 200), errnoBadf)
	expectErrno(t, "fd_read with nread outside memory", g.call("fd_read", 0, 100, 1, outside), errnoFault)
	expectErrno(t, "fd_read with the iovecs outside memory", g.call("fd_read", 0, outside, 1, 200), errnoFault)
}

func TestWASIFdstat(t *testing.T) {
	g := newWASIGuest(t)
	for fd, rights := range map[uint64]uint64{0: rightFdRead | rightPollFdReadwrite, 1: rightFdWrite | rightPollFdReadwrite, 2: rightFdWrite | rightPollFdReadwrite} {
		g.write(64, bytes.Repeat([]byte{0xff}, 24))
		expectErrno(t, "fd_fdstat_get", g.call("fd_fdstat_get", fd, 64), errnoSuccess)
		b := g.read(64, 24)
		if b[0] != filetypeCharacterDevice || binary.LittleEndian.Uint16(b[2:]) != 0 || binary.LittleEndian.Uint64(b[8:]) != rights || binary.LittleEndian.Uint64(b[16:]) != 0 {
			t.Errorf("fd_fdstat_get(%d) = %x", fd, b)
		}
	}
	expectErrno(t, "fd_fdstat_get of a descriptor that is not open", g.call("fd_fdstat_get", 3, 64), errnoBadf)
	expectErrno(t, "fd_fdstat_get outside memory", g.call("fd_fdstat_get", 1, outside), errnoFault)
}

// TestWASINoFiles: there are no pre-opened directories (fd_prestat_get(0) succeeded,
// which SPEC.md said it must not), no files, no network; the fd_*, path_* and sock_*
// functions without other semantics return EBADF or ENOTSUP for any argument.
func TestWASINoFiles(t *testing.T) {
	g := newWASIGuest(t)
	for fd := range uint64(5) {
		expectErrno(t, "fd_prestat_get", g.call("fd_prestat_get", fd, 64), errnoBadf)
		expectErrno(t, "fd_prestat_dir_name", g.call("fd_prestat_dir_name", fd, 64, 16), errnoBadf)
	}
	for name, sig := range abi.WASIFunctions {
		if _, served := wasiFuncs[name]; served {
			continue
		}
		want := errnoBadf
		if strings.HasPrefix(name, "sock_") {
			want = errnoNotsup
		}
		args := make([]uint64, len(sig.Params)) // descriptor 0 and null pointers...
		expectErrno(t, name, g.call(name, args...), want)
		for i := range args {
			args[i] = 1 // ...and stdout
		}
		expectErrno(t, name, g.call(name, args...), want)
	}
	expectErrno(t, "proc_raise", g.call("proc_raise", 9), errnoNosys)
	expectErrno(t, "sched_yield", g.call("sched_yield"), errnoSuccess)
}

// TestWASIPoll: poll_oneoff returns at once, every subscription ready.
func TestWASIPoll(t *testing.T) {
	g := newWASIGuest(t)
	sub := func(userdata uint64, tag byte, fd uint32, timeout time.Duration) []byte {
		b := make([]byte, subscriptionBytes)
		binary.LittleEndian.PutUint64(b, userdata)
		b[8] = tag
		binary.LittleEndian.PutUint32(b[16:], fd)
		if tag == eventClock {
			binary.LittleEndian.PutUint64(b[24:], uint64(timeout))
		}
		return b
	}
	subs := bytes.Join([][]byte{
		sub(11, eventClock, 1, time.Hour),
		sub(12, eventFdRead, 0, 0),
		sub(13, eventFdWrite, 2, 0),
		sub(14, eventFdRead, 7, 0),
	}, nil)
	g.write(0, subs)
	start := time.Now()
	expectErrno(t, "poll_oneoff", g.call("poll_oneoff", 0, 1024, 4, 2048), errnoSuccess)
	if took := time.Since(start); took > 10*time.Second { // an hour if it slept; milliseconds even on a loaded machine
		t.Errorf("poll_oneoff with a clock of an hour took %s", took)
	}
	if g.u32(2048) != 4 {
		t.Errorf("nevents = %d, want 4", g.u32(2048))
	}
	for i, want := range []struct {
		userdata uint64
		errno    wasiErrno
		tag      byte
	}{{11, errnoSuccess, eventClock}, {12, errnoSuccess, eventFdRead}, {13, errnoSuccess, eventFdWrite}, {14, errnoBadf, eventFdRead}} {
		ev := g.read(1024+uint32(i)*eventBytes, eventBytes)
		if binary.LittleEndian.Uint64(ev) != want.userdata || wasiErrno(binary.LittleEndian.Uint16(ev[8:])) != want.errno || ev[10] != want.tag {
			t.Errorf("event %d = %x, want userdata %d, errno %d, type %d", i, ev, want.userdata, want.errno, want.tag)
		}
	}
	g.write(1024, make([]byte, 4*eventBytes))
	g.write(8, []byte{9}) // an unknown event type: EINVAL, nothing written
	expectErrno(t, "poll_oneoff with an unknown type", g.call("poll_oneoff", 0, 1024, 4, 2048), errnoInval)
	if !bytes.Equal(g.read(1024, 4*eventBytes), make([]byte, 4*eventBytes)) {
		t.Error("poll_oneoff wrote events although it failed")
	}
	expectErrno(t, "poll_oneoff of nothing", g.call("poll_oneoff", 0, 1024, 0, 2048), errnoInval)
	expectErrno(t, "poll_oneoff with events outside memory", g.call("poll_oneoff", 0, outside, 1, 2048), errnoFault)
	// A count whose sizes overflow 32 bits must not wrap around into memory.
	expectErrno(t, "poll_oneoff of 2^32/48 subscriptions", g.call("poll_oneoff", 0, 1024, 1<<32/subscriptionBytes+1, 2048), errnoFault)
}

// TestWASIProcExit: proc_exit ends the call with module_exit, whatever the code.
func TestWASIProcExit(t *testing.T) {
	for _, code := range []uint64{0, 7} {
		g := newWASIGuest(t)
		_, err := g.callErr("proc_exit", code)
		if err == nil || !g.inst.exited || g.inst.exitCode != uint32(code) {
			t.Fatalf("proc_exit(%d): %v", code, err)
		}
		var e *Error
		if f := g.inst.failure(err, "cocoon_pre"); !errors.As(f, &e) || e.Code != CodeModuleExit {
			t.Errorf("proc_exit(%d) is reported as %v, want module_exit", code, f)
		}
	}
}
