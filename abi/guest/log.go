package guest

import (
	"fmt"

	"github.com/cocoonhost/cocoon/abi/guest/internal/host"
)

// Level is the severity of a log record (SPEC.md §4.1).
type Level int32

// Log levels.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// String returns the level's lower-case name.
func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	default:
		return "error"
	}
}

// Log appends one record to the request's log, which the pipeline's owner sees and the
// end user does not. Everything a module logs during a request counts against its log
// limit (16 KiB by default); going over fails the request, so log sparingly on hot
// paths such as cocoon_chunk. In native builds the record goes to standard error.
func Log(level Level, msg string) {
	host.Log(int32(level), msg)
}

// Debugf logs a formatted record at debug level.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs a formatted record at info level.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs a formatted record at warn level.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs a formatted record at error level.
func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }
