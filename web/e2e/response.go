package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxHeadOverhead bounds what sealing adds to a whole answer: the head and the tag.
const maxHeadOverhead = maxMeta + 4 + 16

// OpenResponse replaces a sealed answer's body and headers by what it seals, so that
// it reads as the host's plaintext answer, for a client that verifies signatures
// exactly as in plaintext: a whole answer (Content-Type ContentType, at most maxBody
// bytes of plaintext) is opened at once; a stream (text/event-stream) opens as it is
// read, and its Read fails, wrapping ErrE2E, at a record that does not open. The
// visible Retry-After is kept unless the sealed head has one. An answer in plaintext,
// such as the host's refusal of a request it could not open (web/E2E.md §4), is left
// as it is: it is not signed for this request, so it cannot pass as the host's answer
// to it. It fails, wrapping ErrE2E, for a whole answer that does not open, and for a
// stream whose status is not 200 or whose head does not open.
func (c *Client) OpenResponse(resp *http.Response, maxBody int) error {
	var sealed http.Header
	switch resp.Header.Get("Content-Type") {
	case ContentType:
		b, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxBody+maxHeadOverhead)))
		if err != nil {
			return err
		}
		h, body, err := c.OpenBody(resp.StatusCode, b)
		if err != nil {
			return err
		}
		sealed = h
		resp.Body = io.NopCloser(bytes.NewReader(body))
	case "text/event-stream":
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w: a stream with status %d", ErrE2E, resp.StatusCode)
		}
		st, err := c.OpenStream(resp.Body, maxBody)
		if err != nil {
			return err
		}
		sealed = st.Header
		resp.Body = struct {
			io.Reader
			io.Closer
		}{st, resp.Body}
	default:
		return nil
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" && sealed.Get("Retry-After") == "" {
		sealed.Set("Retry-After", ra)
	}
	resp.Header = sealed
	return nil
}

// RefusalCode returns the error code of a host's plaintext refusal of a sealed request
// it could not open (web/E2E.md §4: a 400 that is not sealed, such as "e2e_invalid" or
// "e2e_session_unknown"), "" for any other answer. It reads at most max bytes of such
// a body and puts them back, so that resp reads as before. The refusal is unsigned: a
// relay can forge it, so a caller acts on it only in ways a forgery cannot abuse
// (Client.Retry).
func RefusalCode(resp *http.Response, max int64) string {
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") == ContentType {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, max))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	return e.Error.Code
}
