package web

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/cocoonhost/cocoon/host"
)

// readBodyWithin reads r's body, at most limit bytes (a longer body is a 413), within
// timeout (none if 0; the answer is then a 408). The read deadline is cleared when it
// returns: left set, it would cancel the request when it passed (net/http's watch for
// a closed connection reads under it).
func readBodyWithin(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	if timeout > 0 {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(timeout))
		defer rc.SetReadDeadline(time.Time{})
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, bodyError(err, limit, timeout)
	}
	return b, nil
}

// bodyError words an error of reading a body of at most limit bytes: a 413 for a
// longer body, a 408 for one that did not arrive within timeout (the host's read
// timeout when 0); errors that are already for the client pass as they are.
func bodyError(err error, limit int64, timeout time.Duration) error {
	var (
		tooBig *http.MaxBytesError
		ae     *apiError
		he     *host.Error
	)
	switch {
	case errors.As(err, &tooBig):
		return bodyTooLarge(limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		within := "the host's read timeout"
		if timeout > 0 {
			within = timeout.String()
		}
		return errorf(http.StatusRequestTimeout, typeInvalidRequest, "request_timeout",
			"the request body did not arrive within %s", within)
	case errors.As(err, &ae), errors.As(err, &he):
		return err
	}
	return invalidf("reading the request body: %v", err)
}

func bodyTooLarge(limit int64) *apiError {
	return errorf(http.StatusRequestEntityTooLarge, typeInvalidRequest, "body_too_large",
		"the request body is over the limit of %d bytes", limit)
}
