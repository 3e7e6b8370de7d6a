// Package fstrace runs a program under ptrace(2) and records the file system calls of
// all its threads: every path it names, and, for the files the caller chooses, every
// write with the bytes written, every truncation and every sync. PowerLoss rebuilds such
// a file as a power cut would have left it: only what was written before the last sync
// that completed. Tests use it to prove what a killed process cannot: that data was on
// the disk (a SIGKILL leaves the page cache, and so every write, intact), and that a
// process never touched a path.
//
// It is for tests. It needs Linux on amd64 and the right to trace one's own children
// (CAP_SYS_PTRACE or a Yama ptrace_scope of 0 or 1); Start returns ErrUnsupported
// elsewhere. Tracing stops every thread at every system call, which makes the traced
// program several times slower on system-call-heavy work.
package fstrace

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// ErrUnsupported is returned by Start where tracing is not implemented.
var ErrUnsupported = errors.New("fstrace: tracing needs linux/amd64")

// ErrUnrecordable is wrapped by Wait's error when a recorded file was written in a way
// the record cannot replay (through a shared writable mapping, vectored or copying
// calls, an O_SYNC or O_APPEND descriptor, or replaced by a rename): PowerLoss could not
// rebuild it faithfully, so a test must not trust it.
var ErrUnrecordable = errors.New("fstrace: a recorded file was written in a way the record cannot replay")

// Kind classifies a recorded call.
type Kind int

// The kinds of calls.
const (
	// Named is any call that names a path or a descriptor, such as openat, newfstatat,
	// mkdirat or getdents64: Path says which.
	Named Kind = iota
	// Write is a write to a recorded file: Data was written at Offset.
	Write
	// Truncate sets a recorded file's size to Offset (ftruncate, truncate, O_TRUNC).
	Truncate
	// Sync is fsync or fdatasync of a recorded file, or sync or syncfs (Path "": every
	// file). Written data the file had when the call began is durable once it returned 0.
	Sync
)

// Call is one system call of the traced process.
type Call struct {
	// Entry and Exit order the calls: the tracer numbers every entry and exit it sees,
	// across threads, from 1. Exit is 0 for a call the process did not finish (it was
	// killed in it, or before it began).
	Entry, Exit int
	TID         int
	Name        string // such as "openat", "pwrite64", "fdatasync"
	Kind        Kind
	// Path is the absolute path the call names, or the path of the descriptor it
	// uses; "" when there is none (sync) or it could not be read.
	Path   string
	Offset int64
	Data   []byte // Write: the bytes the call reports written
	Ret    int64  // the return value; negative is -errno
}

// Options configure Start.
type Options struct {
	// Args are the program's arguments after its name; Env its environment (nil:
	// none); Dir its working directory ("": the caller's).
	Args []string
	Env  []string
	Dir  string
	// Stdout and Stderr receive the program's output (nil: discarded). They are
	// copied through pipes by goroutines Wait joins.
	Stdout, Stderr io.Writer
	// Record reports whether the writes, truncations and syncs of the file at an
	// absolute path are recorded with their data. Nil records none.
	Record func(path string) bool
	// KillAt, when set, is called at the entry of every call of Kind Write, Truncate
	// or Sync on a recorded file, before the call runs; when it returns true the
	// process is killed there, so the call never happens. It runs on the tracer's
	// thread: it must be quick.
	KillAt func(Call) bool
}

// Trace is what Wait returns: the calls in the order of their entries.
type Trace struct {
	Calls []Call
}

// Touched returns the calls whose Path is path or below it.
func (t Trace) Touched(path string) []Call {
	var out []Call
	for _, c := range t.Calls {
		if c.Path == path || len(c.Path) > len(path) && c.Path[:len(path)] == path && c.Path[len(path)] == '/' {
			out = append(out, c)
		}
	}
	return out
}

// PowerLoss returns the content the file at path would have after a power cut at the
// end of the trace: initial (its content before the process started, nil if it did not
// exist), then every write and truncation that completed before the start of the last
// sync of the file (or of all files) that completed successfully, in the order they
// completed. Everything later is lost, as the disk may never have received it. It
// reports whether any sync completed; with none, the result is initial.
func (t Trace) PowerLoss(path string, initial []byte) (content []byte, synced bool) {
	durable := 0
	for _, c := range t.Calls {
		if c.Kind == Sync && (c.Path == path || c.Path == "") && c.Exit != 0 && c.Ret == 0 {
			durable = max(durable, c.Entry)
			synced = true
		}
	}
	var done []Call
	for _, c := range t.Calls {
		if (c.Kind == Write || c.Kind == Truncate) && c.Path == path && c.Exit != 0 && c.Exit < durable && c.Ret >= 0 {
			done = append(done, c)
		}
	}
	slices.SortFunc(done, func(a, b Call) int { return a.Exit - b.Exit })
	content = slices.Clone(initial)
	for _, c := range done {
		switch c.Kind {
		case Write:
			if end := c.Offset + int64(len(c.Data)); end > int64(len(content)) {
				content = append(content, make([]byte, end-int64(len(content)))...)
			}
			copy(content[c.Offset:], c.Data)
		case Truncate:
			if c.Offset <= int64(len(content)) {
				content = content[:c.Offset]
			} else {
				content = append(content, make([]byte, c.Offset-int64(len(content)))...)
			}
		}
	}
	return content, synced
}

// String renders c for a test's log.
func (c Call) String() string {
	return fmt.Sprintf("#%d-%d tid %d %s %q off %d len %d ret %d", c.Entry, c.Exit, c.TID, c.Name, c.Path, c.Offset, len(c.Data), c.Ret)
}
