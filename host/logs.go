package host

import (
	"bytes"
	"fmt"
	"time"
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

// requestLogs collects the records and the module compute time of one request.
type requestLogs struct {
	records    []LogRecord
	moduleTime time.Duration
}

// log appends a record from the module, enforcing its log limit: going over it records a
// log_limit fault and aborts the running call.
func (inst *instance) log(source string, level Level, msg []byte) {
	limit := inst.spec.limits.LogBytes
	inst.logged += len(msg)
	if inst.logged > limit {
		inst.fault = inst.errorf(CodeLogLimit, "module logged more than its limit of %d bytes", limit)
		panic(errAbort)
	}
	inst.record(source, level, validUTF8(bytes.TrimSuffix(msg, []byte("\n")), len(msg)))
}

// hostLog appends a record about the module written by the host; it does not count
// against the module's limit.
func (inst *instance) hostLog(msg string) { inst.record("host", LevelError, msg) }

func (inst *instance) record(source string, level Level, msg string) {
	m := inst.spec
	inst.logs.records = append(inst.logs.records, LogRecord{
		Stage: m.stage, Index: m.index, Module: m.module.Hash, Level: level, Source: source, Message: msg,
	})
}

// logWriter captures a module's stdout or stderr (WASI fd 1 and 2) as log records.
type logWriter struct {
	inst   *instance
	source string
	level  Level
}

func (w logWriter) Write(p []byte) (int, error) {
	w.inst.log(w.source, w.level, p)
	return len(p), nil
}
