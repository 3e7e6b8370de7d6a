package host

import (
	"bytes"
	"fmt"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// Level is the severity of a module's log record.
type Level string

// Log levels; cocoon.log takes them as 0-3 (SPEC.md §4.1).
const (
	LevelDebug Level = "debug"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

func levelOf(n int32) Level {
	switch n {
	case 0:
		return LevelDebug
	case 1:
		return LevelInfo
	case 2:
		return LevelWarn
	default:
		return LevelError
	}
}

// LogRecord is one line a module logged while serving a request. Records go to the
// pipeline's owner (and to `cocoon run`), never to the end user: they may hold anything
// the module saw.
type LogRecord struct {
	Stage  Stage  `json:"stage"`
	Index  int    `json:"index"`
	Module string `json:"module"`
	Level  Level  `json:"level"`
	// Source is "log" (cocoon.log), "stdout", "stderr", or "host" (written by the host
	// about the module, such as the full cause of a trap).
	Source  string `json:"source"`
	Message string `json:"message"`
}

func (r LogRecord) String() string {
	return fmt.Sprintf("%s[%d] %s %s: %s", r.Stage, r.Index+1, r.Level, r.Source, r.Message)
}

// requestState is what the instances of one request share: the log records, and the
// module time and memory that count against the request's totals (abi.RequestModuleTime,
// abi.RequestMemoryBytes). The request's goroutine alone uses it.
type requestState struct {
	records    []LogRecord
	moduleTime time.Duration
	// snapshotWait is the time the request waited for snapshots to be taken, which
	// is not module time (Sandbox.snapshotFor).
	snapshotWait time.Duration
	// memory is the bytes of the request's live instances: linear memories and
	// abi.TableElementBytes per table element.
	memory uint64
}

// fits reports whether bytes more of memory or tables fit in what is left of the
// request's total (abi.RequestMemoryBytes).
func (r *requestState) fits(bytes uint64) bool { return r.memory+bytes <= abi.RequestMemoryBytes }

// checkLog records a log_limit fault and aborts the running call if one more record
// of n bytes would pass the module's log limits (bytes or abi.MaxLogRecords).
func (inst *instance) checkLog(n uint64) {
	if limit := inst.spec.limits.LogBytes; uint64(inst.logged)+n > uint64(limit) {
		inst.abort(inst.errorf(CodeLogLimit, "module logged more than its limit of %d bytes", limit))
	}
	if inst.records >= abi.MaxLogRecords {
		inst.abort(inst.errorf(CodeLogLimit, "module wrote more than %d log records", abi.MaxLogRecords))
	}
}

// log appends a record from the module, which checkLog allowed.
func (inst *instance) log(source string, level Level, msg []byte) {
	inst.logged += len(msg)
	inst.records++
	inst.record(source, level, validUTF8(bytes.TrimSuffix(msg, []byte("\n")), len(msg)))
}

// hostLog appends a record about the module written by the host; it does not count
// against the module's limit.
func (inst *instance) hostLog(msg string) { inst.record("host", LevelError, msg) }

func (inst *instance) record(source string, level Level, msg string) {
	m := inst.spec
	inst.request.records = append(inst.request.records, LogRecord{
		Stage: m.stage, Index: m.index, Module: m.module.Hash, Level: level, Source: source, Message: msg,
	})
}
