package client

import "github.com/cocoonhost/cocoon/attest"

// Code says what kind of failure an Error is.
type Code string

const (
	// CodeInvalid: the caller's input is wrong (a base URL, a file, a manifest), before
	// any request.
	CodeInvalid Code = "invalid"
	// CodeUnreachable: the host could not be reached, or the context ended first.
	CodeUnreachable Code = "unreachable"
	// CodeRefused: the host answered with an API error (Status and HostCode say which).
	CodeRefused Code = "refused"
	// CodeBadAnswer: the host answered something that is not what its API sends (not
	// the expected JSON, not evidence, not an API error): it is likely not a Cocoon host.
	CodeBadAnswer Code = "bad_answer"
	// CodeNotVerified: the host, an answer or a receipt failed verification: its TLS
	// handshake, its attestation, a signature. Do not trust what it said.
	CodeNotVerified Code = "not_verified"
)

// Error is the one error type of this package's boundary with a host: every failure to
// reach a host, every refusal and every failed verification is an *Error. Its message
// is safe to show a user: it holds the host's own error message, URLs and hashes,
// never an API key or a seed. Errors of the local file system (a module file that
// does not exist) come as they are, wrapped or not.
type Error struct {
	Code Code
	// Status is the HTTP status of a host's answer, 0 when there was none.
	Status int
	// HostCode is the code of the host's API error (CodeRefused), such as
	// "quote_rate_limited".
	HostCode string
	// Message says what went wrong, in words for the user.
	Message string
	// Report is the report of a failed verification of a host's evidence, whose
	// failed checks say why (FailedChecks); nil for other errors.
	Report *attest.Report
	// Err is the cause, when there is one.
	Err error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// FailedChecks are the checks of Report that failed, nil when there is no report.
func (e *Error) FailedChecks() []attest.Check {
	if e.Report == nil {
		return nil
	}
	var failed []attest.Check
	for _, check := range e.Report.Checks {
		if !check.OK {
			failed = append(failed, check)
		}
	}
	return failed
}
