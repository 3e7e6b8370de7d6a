package billing

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/cocoonhost/cocoon/settle"
)

// Error is the settlement boundary's error: a stable code, the HTTP status it maps to,
// and a message safe to show the client (it never holds keys, seeds or ledger
// internals).
type Error struct {
	Code    string
	Message string
}

// ErrIntegrity is wrapped by a Store's errors for an account whose records fail their
// integrity check. The Service refuses such an account with settle.CodeIntegrity.
var ErrIntegrity = errors.New("settle: a ledger record fails its integrity check")

// Status is the HTTP status of the error's code.
func (e *Error) Status() int {
	switch e.Code {
	case settle.CodeBadSignature, settle.CodeExpired, settle.CodeReplay:
		return http.StatusUnauthorized
	case settle.CodeInsufficient, settle.CodeUnknownAccount, settle.CodeClosing, settle.CodeMaxPrice:
		return http.StatusPaymentRequired
	case settle.CodeUnpricedModel:
		return http.StatusBadRequest
	case settle.CodeInProgress:
		return http.StatusConflict
	case settle.CodeIdempotencyMismatch:
		return http.StatusUnprocessableEntity
	default:
		return http.StatusServiceUnavailable
	}
}

func (e *Error) Error() string { return "settle: " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
