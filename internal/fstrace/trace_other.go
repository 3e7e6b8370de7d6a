//go:build !(linux && amd64)

package fstrace

// Process is a program running under the tracer; elsewhere than linux/amd64 there is
// none.
type Process struct{}

// Start returns ErrUnsupported: tracing needs linux/amd64.
func Start(string, Options) (*Process, error) { return nil, ErrUnsupported }

// Kill does nothing.
func (*Process) Kill() error { return ErrUnsupported }

// Wait returns ErrUnsupported.
func (*Process) Wait() (Trace, error) { return Trace{}, ErrUnsupported }
