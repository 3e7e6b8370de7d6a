package guest

import "fmt"

// Statuses a module may reject a request with (SPEC.md §4.2). The host turns a
// rejection with any other status into module_error.
const (
	StatusBadRequest          = 400 // malformed or unsupported input
	StatusPolicy              = 403 // content blocked by policy
	StatusConflict            = 409 // request conflicts with the pipeline's rules
	StatusTooLarge            = 413 // input too long for this pipeline
	StatusUnprocessable       = 422 // well-formed but not acceptable
	StatusTooManyRequests     = 429 // the module's own quota
	StatusUnavailableForLegal = 451 // legal block
)

// Rejection is the error a handler returns to reject a request: the client gets an
// error response with Status and Message. Make one with [Reject].
type Rejection struct {
	Status  int
	Message string
}

// Reject returns a [*Rejection]. A handler that returns it, directly or wrapped with
// %w, rejects the request. The message is shown to the client as is (the host cuts it at
// 1024 bytes), so it must not contain anything the client may not see. A status outside
// the list of SPEC.md §4.2 fails the request with module_error instead; the SDK logs why.
func Reject(status int, message string) error {
	return &Rejection{Status: status, Message: message}
}

// Error returns the status and message.
func (r *Rejection) Error() string {
	return fmt.Sprintf("rejected with status %d: %s", r.Status, r.Message)
}

// Allowed reports whether the host accepts r.Status as a rejection status.
func (r *Rejection) Allowed() bool {
	switch r.Status {
	case StatusBadRequest, StatusPolicy, StatusConflict, StatusTooLarge,
		StatusUnprocessable, StatusTooManyRequests, StatusUnavailableForLegal:
		return true
	}
	return false
}
