package proxytest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Recorder records what a relay forwards, one Exchange per request, as it forwards it:
// what a relay, a load balancer or a developer's backend between a client and a host
// gets to see. Host's relay records with one, and so does NewRelay's. The zero value is
// ready; it is safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	log []*Exchange
}

// Exchange is one request and its answer as a relay forwarded them.
type Exchange struct {
	// Path is the request's URL path, ContentType its Content-Type, Body its body.
	Path, ContentType string
	Body              []byte
	request           []byte
	mu                sync.Mutex // the answer is written while it streams
	answer            bytes.Buffer
}

// Request is the request as forwarded: its request line, headers and body.
func (e *Exchange) Request() []byte { return e.request }

// Answer is what was forwarded of the answer so far: its status line, headers and body.
func (e *Exchange) Answer() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return bytes.Clone(e.answer.Bytes())
}

// Record returns next behind the recorder: each request is read whole and recorded
// (a new Exchange) before next sees it, and its answer as next writes it, a stream's
// flushes passed on as they come.
func (rec *Recorder) Record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req bytes.Buffer
		fmt.Fprintf(&req, "%s %s HTTP/1.1\r\n", r.Method, r.URL.RequestURI())
		r.Header.Write(&req)
		req.WriteString("\r\n")
		req.Write(body)
		e := &Exchange{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body, request: req.Bytes()}
		rec.mu.Lock()
		rec.log = append(rec.log, e)
		rec.mu.Unlock()
		next.ServeHTTP(&answerRecorder{ResponseWriter: w, e: e}, r)
	})
}

// Exchanges returns the exchanges recorded so far, in the order the requests came.
func (rec *Recorder) Exchanges() []*Exchange {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.log)
}

// Captured returns every byte recorded so far, both ways: each request followed by
// what was forwarded of its answer.
func (rec *Recorder) Captured() []byte {
	var b bytes.Buffer
	for _, e := range rec.Exchanges() {
		b.Write(e.Request())
		b.Write(e.Answer())
	}
	return b.Bytes()
}

// Asked counts the requests recorded for paths ending with suffix.
func (rec *Recorder) Asked(suffix string) int {
	n := 0
	for _, e := range rec.Exchanges() {
		if strings.HasSuffix(e.Path, suffix) {
			n++
		}
	}
	return n
}

// answerRecorder copies an answer into its exchange as it passes.
type answerRecorder struct {
	http.ResponseWriter
	e           *Exchange
	wroteHeader bool
}

func (a *answerRecorder) WriteHeader(status int) {
	if !a.wroteHeader {
		a.wroteHeader = true
		a.e.mu.Lock()
		fmt.Fprintf(&a.e.answer, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
		a.ResponseWriter.Header().Write(&a.e.answer)
		a.e.answer.WriteString("\r\n")
		a.e.mu.Unlock()
	}
	a.ResponseWriter.WriteHeader(status)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if !a.wroteHeader {
		a.WriteHeader(http.StatusOK)
	}
	a.e.mu.Lock()
	a.e.answer.Write(b)
	a.e.mu.Unlock()
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer (Flush).
func (a *answerRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// NewRelay serves, until the test ends, a reverse proxy to target (a host's URL) that
// records every request and answer with a Recorder, and returns its URL and the
// recorder. Streams pass as they come. tamper, when not nil, may change each whole
// answer's body, by the request's path, before it is recorded and forwarded (an
// active relay); it returns the body unchanged for answers it leaves alone.
func NewRelay(t testing.TB, target string, tamper func(path string, body []byte) []byte) (string, *Recorder) {
	t.Helper()
	upstream, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host
		},
	}
	if tamper != nil {
		proxy.ModifyResponse = func(resp *http.Response) error {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			body = tamper(resp.Request.URL.Path, body)
			resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		}
	}
	rec := &Recorder{}
	ts := httptest.NewServer(rec.Record(proxy))
	t.Cleanup(ts.Close)
	return ts.URL, rec
}
