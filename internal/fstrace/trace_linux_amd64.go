//go:build linux && amd64

package fstrace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// System call numbers of linux/amd64 that the syscall package lacks.
const (
	sysSyncFileRange = 277
	sysSyncfs        = 306
	sysRenameat2     = 316
	sysCopyFileRange = 326
	sysPwritev2      = 328
	sysStatx         = 332
	sysFaccessat2    = 439
)

// pathArgs maps a call that names paths to the argument indexes of its (dirfd, path)
// pairs; dirfd -1 means the working directory.
var pathArgs = map[uint64][][2]int{
	syscall.SYS_OPEN: {{-1, 0}}, syscall.SYS_CREAT: {{-1, 0}}, syscall.SYS_OPENAT: {{0, 1}},
	syscall.SYS_STAT: {{-1, 0}}, syscall.SYS_LSTAT: {{-1, 0}}, syscall.SYS_NEWFSTATAT: {{0, 1}}, sysStatx: {{0, 1}},
	syscall.SYS_ACCESS: {{-1, 0}}, syscall.SYS_FACCESSAT: {{0, 1}}, sysFaccessat2: {{0, 1}},
	syscall.SYS_MKDIR: {{-1, 0}}, syscall.SYS_MKDIRAT: {{0, 1}}, syscall.SYS_RMDIR: {{-1, 0}},
	syscall.SYS_UNLINK: {{-1, 0}}, syscall.SYS_UNLINKAT: {{0, 1}},
	syscall.SYS_RENAME: {{-1, 0}, {-1, 1}}, syscall.SYS_RENAMEAT: {{0, 1}, {2, 3}}, sysRenameat2: {{0, 1}, {2, 3}},
	syscall.SYS_LINK: {{-1, 0}, {-1, 1}}, syscall.SYS_LINKAT: {{0, 1}, {2, 3}},
	syscall.SYS_SYMLINK: {{-1, 1}}, syscall.SYS_SYMLINKAT: {{1, 2}},
	syscall.SYS_READLINK: {{-1, 0}}, syscall.SYS_READLINKAT: {{0, 1}},
	syscall.SYS_CHDIR: {{-1, 0}}, syscall.SYS_TRUNCATE: {{-1, 0}}, syscall.SYS_EXECVE: {{-1, 0}},
	syscall.SYS_CHMOD: {{-1, 0}}, syscall.SYS_FCHMODAT: {{0, 1}}, syscall.SYS_UTIMENSAT: {{0, 1}},
}

// replacing are the calls that replace or remove the file a path names.
var replacing = map[uint64]bool{
	syscall.SYS_RENAME: true, syscall.SYS_RENAMEAT: true, sysRenameat2: true, syscall.SYS_LINK: true,
	syscall.SYS_LINKAT: true, syscall.SYS_UNLINK: true, syscall.SYS_UNLINKAT: true,
}

// fdArgs maps a call that uses a descriptor of interest to the index of that argument.
var fdArgs = map[uint64]int{
	syscall.SYS_WRITE: 0, syscall.SYS_PWRITE64: 0, syscall.SYS_WRITEV: 0, syscall.SYS_PWRITEV: 0, sysPwritev2: 0,
	syscall.SYS_FSYNC: 0, syscall.SYS_FDATASYNC: 0, sysSyncFileRange: 0, sysSyncfs: 0,
	syscall.SYS_FTRUNCATE: 0, syscall.SYS_FALLOCATE: 0, syscall.SYS_MMAP: 4,
	sysCopyFileRange: 2, syscall.SYS_SENDFILE: 0, syscall.SYS_SPLICE: 2,
	syscall.SYS_GETDENTS64: 0, syscall.SYS_FSTAT: 0, syscall.SYS_FCHDIR: 0,
}

// The flags that matter of open(2) and mmap(2).
const (
	oTrunc    = 0o1000
	oAppend   = 0o2000
	oDsync    = 0o10000 // O_SYNC includes it
	protWrite = 0x2
	mapShared = 0x1
	atFDCWD   = -100
)

// ptrace(2) requests and options the syscall package lacks.
const (
	ptraceGetSyscallInfo = 0x420e
	syscallInfoEntry     = 1
	syscallInfoExit      = 2
	traceOptions         = syscall.PTRACE_O_TRACESYSGOOD | syscall.PTRACE_O_TRACECLONE | syscall.PTRACE_O_TRACEFORK |
		syscall.PTRACE_O_TRACEVFORK | syscall.PTRACE_O_TRACEEXEC | 0x100000 // PTRACE_O_EXITKILL
)

// syscallInfo is struct ptrace_syscall_info: op at 0, the entry's number and arguments
// (or the exit's return value) from offset 24.
type syscallInfo struct {
	Op    uint8
	_     [7]uint8
	IP    uint64
	SP    uint64
	NrOrR uint64 // entry: the number; exit: the return value
	Args  [6]uint64
	_     uint32
	_     uint32
}

// Process is a program running under the tracer.
type Process struct {
	opts Options
	pid  int

	mu     sync.Mutex
	exited bool // the tracer has reaped every thread: pid may be reused

	done   chan struct{}
	copies sync.WaitGroup
	trace  Trace
	err    error

	// Owned by the tracer's thread.
	pending map[int]int // tid → index in trace.Calls of its call in progress
	started map[int]bool
	mem     map[int]*os.File
	buffers map[int]uint64 // tid → the address of a pending write's buffer
	// replacing marks a thread whose call in progress renames, links or unlinks a
	// recorded file.
	replacing map[int]bool
	seq       int
	bad       []error
}

// Start runs name under the tracer with opts and returns once it is traced. The tracer
// is a goroutine locked to its own OS thread (ptrace requests must come from the thread
// that started the tracee); Wait joins it. The program runs in its own process group.
func Start(name string, opts Options) (*Process, error) {
	p := &Process{opts: opts, done: make(chan struct{}), pending: map[int]int{}, started: map[int]bool{},
		mem: map[int]*os.File{}, buffers: map[int]uint64{}, replacing: map[int]bool{}}
	files := []*os.File{nil, nil, nil}
	for i, w := range []io.Writer{opts.Stdout, opts.Stderr} {
		if w == nil {
			w = io.Discard
		}
		r, wr, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		files[1+i] = wr
		p.copies.Add(1)
		go func() {
			defer p.copies.Done()
			defer r.Close()
			io.Copy(w, r)
		}()
	}
	started := make(chan error, 1)
	go p.run(name, files, started)
	if err := <-started; err != nil {
		p.copies.Wait()
		return nil, err
	}
	return p, nil
}

// Kill ends the process with SIGKILL: no deferred code, no flush. It is a no-op once
// the process is gone.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	return syscall.Kill(-p.pid, syscall.SIGKILL)
}

// Wait waits until every thread of the process has exited and its output is copied,
// and returns the trace. The error wraps ErrUnrecordable when a recorded file was
// written in a way PowerLoss cannot replay.
func (p *Process) Wait() (Trace, error) {
	<-p.done
	p.copies.Wait()
	return p.trace, p.err
}

// run starts the program and traces it until every thread is gone. It never unlocks
// its OS thread, which Go then ends with the goroutine: the thread was a tracer.
func (p *Process) run(name string, files []*os.File, started chan<- error) {
	defer close(p.done)
	runtime.LockOSThread()
	proc, err := os.StartProcess(name, append([]string{name}, p.opts.Args...), &os.ProcAttr{
		Dir: p.opts.Dir, Env: p.opts.Env, Files: files,
		Sys: &syscall.SysProcAttr{Ptrace: true, Setpgid: true},
	})
	files[1].Close()
	files[2].Close()
	if err != nil {
		started <- err
		return
	}
	defer proc.Release()
	p.pid = proc.Pid
	// The tracee stops with SIGTRAP after its execve.
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(p.pid, &ws, syscall.WALL, nil); err != nil || !ws.Stopped() {
		syscall.Kill(p.pid, syscall.SIGKILL)
		started <- fmt.Errorf("fstrace: the program did not stop after exec: %v %v", ws, err)
		return
	}
	if err := syscall.PtraceSetOptions(p.pid, traceOptions); err != nil {
		syscall.Kill(p.pid, syscall.SIGKILL)
		started <- fmt.Errorf("fstrace: ptrace options: %w", err)
		return
	}
	p.started[p.pid] = true
	started <- nil
	resume := func(tid, sig int) { syscall.PtraceSyscall(tid, sig) } // ESRCH: the thread died meanwhile
	resume(p.pid, 0)
	for {
		tid, err := syscall.Wait4(-p.pid, &ws, syscall.WALL, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: every thread is gone
			break
		}
		switch {
		case ws.Exited() || ws.Signaled():
			// The kernel may give tid to a new thread later.
			if f := p.mem[tid]; f != nil {
				f.Close()
			}
			delete(p.mem, tid)
			delete(p.started, tid)
			delete(p.pending, tid)
			delete(p.buffers, tid)
			delete(p.replacing, tid)
			continue
		case !ws.Stopped():
			continue
		}
		sig := ws.StopSignal()
		first := !p.started[tid]
		p.started[tid] = true
		switch {
		case sig == syscall.SIGTRAP|0x80:
			p.syscallStop(tid)
			resume(tid, 0)
		case sig == syscall.SIGTRAP && ws.TrapCause() > 0, first && sig == syscall.SIGSTOP:
			resume(tid, 0) // a ptrace event, or a new thread's first stop
		default:
			resume(tid, int(sig)) // a signal for the program: deliver it
		}
	}
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	for _, f := range p.mem {
		f.Close()
	}
	if len(p.bad) > 0 {
		p.err = fmt.Errorf("%w: %w", ErrUnrecordable, errors.Join(p.bad...))
	}
}

// syscallStop records the call tid is entering or leaving.
func (p *Process) syscallStop(tid int) {
	var info syscallInfo
	_, _, errno := syscall.Syscall6(syscall.SYS_PTRACE, ptraceGetSyscallInfo, uintptr(tid), unsafe.Sizeof(info), uintptr(unsafe.Pointer(&info)), 0, 0)
	if errno != 0 {
		return
	}
	switch info.Op {
	case syscallInfoEntry:
		p.entry(tid, info.NrOrR, info.Args)
	case syscallInfoExit:
		i, ok := p.pending[tid]
		if !ok {
			return
		}
		delete(p.pending, tid)
		p.seq++
		c := &p.trace.Calls[i]
		c.Exit, c.Ret = p.seq, int64(info.NrOrR)
		if c.Kind == Write && c.Ret > 0 {
			c.Data = p.read(tid, p.buffers[tid], int(c.Ret))
		}
		if p.replacing[tid] && c.Ret == 0 {
			p.bad = append(p.bad, fmt.Errorf("%s replaces or removes a recorded file", c))
		}
		delete(p.replacing, tid)
	}
}

// entry records the start of call nr with args when it is of interest.
func (p *Process) entry(tid int, nr uint64, args [6]uint64) {
	var calls []Call
	name := syscallName(nr)
	for _, pa := range pathArgs[nr] {
		path := p.absolute(tid, pa[0], args, p.readString(tid, args[pa[1]]))
		c := Call{TID: tid, Name: name, Kind: Named, Path: path}
		if p.recorded(path) {
			switch flags := p.openFlags(nr, args); {
			case replacing[nr]:
				p.replacing[tid] = true // refused at exit if it succeeds
			case nr == syscall.SYS_TRUNCATE:
				c.Kind, c.Offset = Truncate, int64(args[1])
			case flags&oDsync != 0:
				p.bad = append(p.bad, fmt.Errorf("%s opens a recorded file with O_SYNC or O_DSYNC", c))
			case flags&oTrunc != 0:
				c.Kind = Truncate
			}
		}
		calls = append(calls, c)
	}
	if i, ok := fdArgs[nr]; ok {
		fd := int(int32(args[i]))
		if nr == syscall.SYS_MMAP && fd < 0 {
			return
		}
		path := p.fdPath(tid, fd)
		c := Call{TID: tid, Name: name, Kind: Named, Path: path}
		if p.recorded(path) {
			switch nr {
			case syscall.SYS_PWRITE64:
				c.Kind, c.Offset = Write, int64(args[3])
				p.buffers[tid] = args[1]
			case syscall.SYS_WRITE:
				pos, flags := p.fdInfo(tid, fd)
				if flags&oAppend != 0 {
					p.bad = append(p.bad, fmt.Errorf("%s writes a recorded file opened with O_APPEND", c))
				}
				c.Kind, c.Offset = Write, pos
				p.buffers[tid] = args[1]
			case syscall.SYS_FTRUNCATE:
				c.Kind, c.Offset = Truncate, int64(args[1])
			case syscall.SYS_FSYNC, syscall.SYS_FDATASYNC:
				c.Kind = Sync
			case syscall.SYS_MMAP:
				if args[2]&protWrite != 0 && args[3]&mapShared != 0 {
					p.bad = append(p.bad, fmt.Errorf("%s maps a recorded file shared and writable", c))
				}
			case syscall.SYS_WRITEV, syscall.SYS_PWRITEV, sysPwritev2, syscall.SYS_FALLOCATE, sysCopyFileRange, syscall.SYS_SENDFILE, syscall.SYS_SPLICE:
				p.bad = append(p.bad, fmt.Errorf("%s writes a recorded file in a way the record does not replay", c))
			}
		}
		if nr == sysSyncfs {
			c.Kind, c.Path = Sync, ""
		}
		calls = append(calls, c)
	}
	if nr == syscall.SYS_SYNC {
		calls = append(calls, Call{TID: tid, Name: name, Kind: Sync})
	}
	if len(calls) == 0 {
		return
	}
	p.seq++
	for i := range calls {
		calls[i].Entry = p.seq
	}
	p.trace.Calls = append(p.trace.Calls, calls...)
	// The last call is the one whose exit completes; the others (a rename's second
	// path) carry the entry only.
	p.pending[tid] = len(p.trace.Calls) - 1
	last := calls[len(calls)-1]
	if p.opts.KillAt != nil && last.Kind != Named && p.recorded(last.Path) && p.opts.KillAt(last) {
		syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// recorded reports whether path's writes are recorded.
func (p *Process) recorded(path string) bool {
	return path != "" && p.opts.Record != nil && p.opts.Record(path)
}

// openFlags returns the flags of an open call, 0 for other calls.
func (p *Process) openFlags(nr uint64, args [6]uint64) int {
	switch nr {
	case syscall.SYS_OPEN:
		return int(args[1])
	case syscall.SYS_OPENAT:
		return int(args[2])
	case syscall.SYS_CREAT:
		return oTrunc
	}
	return 0
}

// absolute makes path absolute against the directory of dirfd argument dirArg (-1: the
// working directory).
func (p *Process) absolute(tid, dirArg int, args [6]uint64, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	base := ""
	if dirArg < 0 || int32(args[dirArg]) == atFDCWD {
		base, _ = os.Readlink(fmt.Sprintf("/proc/%d/cwd", tid))
	} else {
		base = p.fdPath(tid, int(int32(args[dirArg])))
	}
	return filepath.Join(base, path)
}

// fdPath returns the path of tid's descriptor fd, "" when it has none.
func (p *Process) fdPath(tid, fd int) string {
	path, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", tid, fd))
	if err != nil || !filepath.IsAbs(path) {
		return "" // a pipe, a socket, or gone
	}
	return path
}

// fdInfo returns the position and flags of tid's descriptor fd.
func (p *Process) fdInfo(tid, fd int) (pos int64, flags int) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", tid, fd))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "pos":
			pos, _ = strconv.ParseInt(v, 10, 64)
		case "flags":
			f, _ := strconv.ParseInt(v, 8, 64)
			flags = int(f)
		}
	}
	return pos, flags
}

// read returns n bytes of tid's memory at addr.
func (p *Process) read(tid int, addr uint64, n int) []byte {
	f := p.mem[tid]
	if f == nil {
		var err error
		if f, err = os.Open(fmt.Sprintf("/proc/%d/mem", tid)); err != nil {
			return nil
		}
		p.mem[tid] = f
	}
	b := make([]byte, n)
	m, _ := f.ReadAt(b, int64(addr))
	return b[:m]
}

// readString returns the NUL-terminated string at addr in tid's memory (at most 4 KiB).
func (p *Process) readString(tid int, addr uint64) string {
	var out []byte
	for len(out) < 4096 {
		chunk := p.read(tid, addr+uint64(len(out)), 256)
		if len(chunk) == 0 {
			break
		}
		if i := bytes.IndexByte(chunk, 0); i >= 0 {
			return string(append(out, chunk[:i]...))
		}
		out = append(out, chunk...)
	}
	return string(out)
}

// syscallName names the calls this package records.
func syscallName(nr uint64) string {
	if n, ok := names[nr]; ok {
		return n
	}
	return "syscall " + strconv.FormatUint(nr, 10)
}

var names = map[uint64]string{
	syscall.SYS_OPEN: "open", syscall.SYS_CREAT: "creat", syscall.SYS_OPENAT: "openat", syscall.SYS_STAT: "stat",
	syscall.SYS_LSTAT: "lstat", syscall.SYS_NEWFSTATAT: "newfstatat", sysStatx: "statx", syscall.SYS_ACCESS: "access",
	syscall.SYS_FACCESSAT: "faccessat", sysFaccessat2: "faccessat2", syscall.SYS_MKDIR: "mkdir", syscall.SYS_MKDIRAT: "mkdirat",
	syscall.SYS_RMDIR: "rmdir", syscall.SYS_UNLINK: "unlink", syscall.SYS_UNLINKAT: "unlinkat", syscall.SYS_RENAME: "rename",
	syscall.SYS_RENAMEAT: "renameat", sysRenameat2: "renameat2", syscall.SYS_LINK: "link", syscall.SYS_LINKAT: "linkat",
	syscall.SYS_SYMLINK: "symlink", syscall.SYS_SYMLINKAT: "symlinkat", syscall.SYS_READLINK: "readlink",
	syscall.SYS_READLINKAT: "readlinkat", syscall.SYS_CHDIR: "chdir", syscall.SYS_TRUNCATE: "truncate",
	syscall.SYS_EXECVE: "execve", syscall.SYS_CHMOD: "chmod", syscall.SYS_FCHMODAT: "fchmodat", syscall.SYS_UTIMENSAT: "utimensat",
	syscall.SYS_WRITE: "write", syscall.SYS_PWRITE64: "pwrite64", syscall.SYS_WRITEV: "writev", syscall.SYS_PWRITEV: "pwritev",
	sysPwritev2: "pwritev2", syscall.SYS_FSYNC: "fsync", syscall.SYS_FDATASYNC: "fdatasync", sysSyncFileRange: "sync_file_range",
	sysSyncfs: "syncfs", syscall.SYS_SYNC: "sync", syscall.SYS_FTRUNCATE: "ftruncate", syscall.SYS_FALLOCATE: "fallocate",
	syscall.SYS_MMAP: "mmap", sysCopyFileRange: "copy_file_range", syscall.SYS_SENDFILE: "sendfile", syscall.SYS_SPLICE: "splice",
	syscall.SYS_GETDENTS64: "getdents64", syscall.SYS_FSTAT: "fstat", syscall.SYS_FCHDIR: "fchdir",
}
