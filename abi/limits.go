package abi

import (
	"fmt"
	"time"
)

// Limits bound what one module may use while serving one request (SPEC.md §7.1). The
// zero value of a field means "use the default"; a field above CeilingLimits is refused
// by Check. Limits are plain values: copy freely.
type Limits struct {
	// MemoryPages caps the module's linear memory, in 64 KiB pages.
	MemoryPages uint32 `json:"memory_pages,omitempty"`
	// CallTimeout caps the wall time of each hook call, from the host's call of
	// cocoon_alloc to the hook's return, host functions included.
	CallTimeout Duration `json:"time_ms,omitempty"`
	// InputBytes caps the bytes handed to one hook call.
	InputBytes int `json:"input_bytes,omitempty"`
	// OutputBytes caps the bytes one hook call may return.
	OutputBytes int `json:"output_bytes,omitempty"`
	// LogBytes caps everything the module logs during one request: cocoon.log records
	// and stdout/stderr together.
	LogBytes int `json:"log_bytes,omitempty"`
	// TableElements caps each of the module's tables, in elements: its declared
	// minimum and what table.grow may add.
	TableElements uint32 `json:"table_elements,omitempty"`
}

// Duration is a time.Duration that encodes in JSON as whole milliseconds, the unit of
// the manifest's "time_ms".
type Duration time.Duration

// MarshalJSON encodes d as an integer number of milliseconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprint(time.Duration(d).Milliseconds())), nil
}

// UnmarshalJSON decodes an integer number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var ms int64
	if _, err := fmt.Sscan(string(b), &ms); err != nil || fmt.Sprint(ms) != string(b) {
		return fmt.Errorf("time_ms must be a whole number of milliseconds, got %s", b)
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}

// Size units used by the limits.
const (
	KiB = 1 << 10
	MiB = 1 << 20

	// PageSize is the size of one WebAssembly memory page.
	PageSize = 64 * KiB
)

// MaxModuleBytes is the largest module the host accepts at upload.
const MaxModuleBytes = 16 * MiB

// MaxConfigBytes is the largest per-module config a pipeline may carry.
const MaxConfigBytes = 64 * KiB

// MaxRejectMessageBytes is where a cocoon.reject message is cut.
const MaxRejectMessageBytes = 1 * KiB

// MinInitTimeout is the least time instantiation gets (a start section and
// _initialize), whatever the call time limit: a Go guest's runtime takes milliseconds to
// start, and much longer on a loaded machine.
const MinInitTimeout = time.Second

// The host's fixed limits (SPEC.md §7.2). Unlike Limits they are the same for every
// module and pipeline; exceeding one fails the request with the error code in its
// comment.
const (
	// MaxStageModules is the most modules one stage (pre or post) of a pipeline may
	// list; a manifest with more is refused.
	MaxStageModules = 16
	// RequestMemoryBytes bounds the memory of all the instances of one request
	// together: their linear memories plus TableElementBytes per table element. A
	// growth past it is refused (memory.grow and table.grow return -1, and a module
	// that then traps or exits fails with memory_limit); a pipeline whose modules'
	// memory minimums alone exceed it is refused when it is created.
	RequestMemoryBytes = 512 * MiB
	// TableElementBytes is what one table element counts against RequestMemoryBytes.
	TableElementBytes = 8
	// RequestModuleTime bounds the wall time of all module calls and instantiations of
	// one request together (timeout). Admission reserves compute for this much.
	RequestModuleTime = 10 * time.Second
	// RequestOutputBytes bounds the bytes one module returns over all its calls in one
	// request (output_too_large).
	RequestOutputBytes = 16 * MiB
	// MaxLogRecords bounds the log records one module writes in one request, cocoon.log
	// and stdout/stderr writes together (log_limit), besides Limits.LogBytes.
	MaxLogRecords = 1024
	// MaxTables is the most tables a module may define; more is refused at upload.
	MaxTables = 8
	// MaxCallDepth bounds the call stack of a module, in frames: a call that would
	// nest deeper fails with stack_overflow. A function whose parameters and locals
	// number more than CallFrameLocals counts as 1 + (parameters + locals) /
	// CallFrameLocals frames, so that large frames cannot make a deep stack huge.
	MaxCallDepth = 1024
	// CallFrameLocals is the number of parameters and locals one frame of
	// MaxCallDepth stands for.
	CallFrameLocals = 16
)

// DefaultLimits are the limits of a module whose manifest sets none.
var DefaultLimits = Limits{
	MemoryPages:   1024, // 64 MiB: a Go wasip1 guest needs a few MiB to start.
	CallTimeout:   Duration(250 * time.Millisecond),
	InputBytes:    1 * MiB,
	OutputBytes:   1 * MiB,
	LogBytes:      16 * KiB,
	TableElements: 65_536, // a Go guest's table holds about 6,600 functions
}

// CeilingLimits are the largest limits a pipeline may ask for.
var CeilingLimits = Limits{
	MemoryPages:   4096, // 256 MiB
	CallTimeout:   Duration(10 * time.Second),
	InputBytes:    16 * MiB,
	OutputBytes:   16 * MiB,
	LogBytes:      1 * MiB,
	TableElements: 1 << 20,
}

// WithDefaults returns l with every unset (zero) field taken from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.MemoryPages != 0 {
		d.MemoryPages = l.MemoryPages
	}
	if l.CallTimeout != 0 {
		d.CallTimeout = l.CallTimeout
	}
	if l.InputBytes != 0 {
		d.InputBytes = l.InputBytes
	}
	if l.OutputBytes != 0 {
		d.OutputBytes = l.OutputBytes
	}
	if l.LogBytes != 0 {
		d.LogBytes = l.LogBytes
	}
	if l.TableElements != 0 {
		d.TableElements = l.TableElements
	}
	return d
}

// Check reports the first field of l that is negative or above CeilingLimits, naming
// the manifest field. Zero fields are valid (they mean "default"). The unsigned fields
// cannot be negative: a manifest that gives them a negative number fails to decode.
func (l Limits) Check() error {
	c := CeilingLimits
	switch {
	case l.MemoryPages > c.MemoryPages:
		return fmt.Errorf("memory_pages %d is above the ceiling of %d", l.MemoryPages, c.MemoryPages)
	case l.CallTimeout < 0 || l.CallTimeout > c.CallTimeout:
		return fmt.Errorf("time_ms %d must be between 0 (the default) and %d", time.Duration(l.CallTimeout).Milliseconds(), time.Duration(c.CallTimeout).Milliseconds())
	case l.InputBytes < 0 || l.InputBytes > c.InputBytes:
		return fmt.Errorf("input_bytes %d must be between 0 (the default) and %d", l.InputBytes, c.InputBytes)
	case l.OutputBytes < 0 || l.OutputBytes > c.OutputBytes:
		return fmt.Errorf("output_bytes %d must be between 0 (the default) and %d", l.OutputBytes, c.OutputBytes)
	case l.LogBytes < 0 || l.LogBytes > c.LogBytes:
		return fmt.Errorf("log_bytes %d must be between 0 (the default) and %d", l.LogBytes, c.LogBytes)
	case l.TableElements > c.TableElements:
		return fmt.Errorf("table_elements %d is above the ceiling of %d", l.TableElements, c.TableElements)
	}
	return nil
}
