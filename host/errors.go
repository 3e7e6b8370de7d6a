package host

import (
	"fmt"
	"net/http"
)

// ErrorCode says what went wrong with a module while it served a request. The codes are
// the ones of SPEC.md §9 and are stable: clients and dashboards match on them.
type ErrorCode string

// Error codes of a failed module call (SPEC.md §9) and of a refused module or pipeline.
const (
	CodeRejected       ErrorCode = "rejected"
	CodeTimeout        ErrorCode = "timeout"
	CodeCancelled      ErrorCode = "cancelled"
	CodeMemoryLimit    ErrorCode = "memory_limit"
	CodeStackOverflow  ErrorCode = "stack_overflow"
	CodeTrap           ErrorCode = "trap"
	CodeModuleExit     ErrorCode = "module_exit"
	CodeModuleError    ErrorCode = "module_error"
	CodeAllocFailed    ErrorCode = "alloc_failed"
	CodeOutOfBounds    ErrorCode = "out_of_bounds"
	CodeInputTooLarge  ErrorCode = "input_too_large"
	CodeOutputTooLarge ErrorCode = "output_too_large"
	CodeInvalidOutput  ErrorCode = "invalid_output"
	CodeLogLimit       ErrorCode = "log_limit"

	// CodeInvalidRequest refuses a client's request that is not a chat completion request.
	CodeInvalidRequest ErrorCode = "invalid_request"
	// CodeInvalidModule refuses an upload: the bytes fail abi.Validate or do not compile.
	CodeInvalidModule ErrorCode = "invalid_module"
	// CodeInvalidPipeline refuses a pipeline: a module in the wrong stage, bad limits or config.
	CodeInvalidPipeline ErrorCode = "invalid_pipeline"
)

// Stage names where in a pipeline a module runs.
type Stage string

// The two stages of a pipeline.
const (
	StagePre  Stage = "pre"
	StagePost Stage = "post"
)

// Error is the one error type of the sandbox boundary. Error() is safe to show to the
// client: it names the stage, the module's position and hash and what went wrong, never
// the module's internals (those go to its logs, see LogRecord).
type Error struct {
	Code ErrorCode
	// Status is the HTTP status a server answers with: the module's own status for
	// CodeRejected, otherwise the one SPEC.md §9 gives for the code.
	Status int
	// Stage and Index place the module in its pipeline (Index counts from 0 within
	// the stage); Module is its "sha256:" hash. All empty for upload errors.
	Stage  Stage
	Index  int
	Module string
	// Message is the precise reason: for CodeRejected the module's own message.
	Message string
	// Reason refines CodeInvalidModule with the abi.ErrorCode of a module that failed
	// validation, such as "unknown_import"; it is empty otherwise.
	Reason string
	// RetryAfter, when positive, is how many seconds a client should wait before it
	// retries (CodeCompileBusy).
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Code == CodeRejected || e.Module == "" {
		return e.Message
	}
	return fmt.Sprintf("%s module %d (%s): %s", e.Stage, e.Index+1, e.Module, e.Message)
}

// statusOf maps each code to the HTTP status of SPEC.md §9.
func statusOf(code ErrorCode) int {
	switch code {
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodeInputTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeCancelled:
		return 499 // client closed request, as nginx logs it
	case CodeInvalidRequest, CodeInvalidModule, CodeInvalidPipeline:
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

// rejectStatuses are the statuses a module may reject with (SPEC.md §4.2).
var rejectStatuses = map[int]bool{400: true, 403: true, 409: true, 413: true, 422: true, 429: true, 451: true}
