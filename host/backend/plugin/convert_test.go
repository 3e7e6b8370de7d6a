package plugin

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/plugin/pb"
)

// TestRequestRoundTrip checks that a request survives the wire, including the
// difference between an unset parameter and a zero one.
func TestRequestRoundTrip(t *testing.T) {
	zero, half, seed := 0.0, 0.5, int64(-7)
	for _, req := range []*backend.Request{
		{Messages: []backend.Message{}},
		{Model: "m", Messages: []backend.Message{{Role: "user", Content: "héllo"}}, MaxTokens: 12,
			Temperature: &zero, TopP: &half, Seed: &seed, Stop: []string{"\n\n", "THE END"}, Raw: []byte(`{"x":1}`)},
		{Messages: []backend.Message{{Role: "system"}, {Role: "user", Content: "a"}}, Temperature: &half},
	} {
		wire, err := proto.Marshal(requestToPB(req))
		if err != nil {
			t.Fatal(err)
		}
		var m pb.GenerateRequest
		if err := proto.Unmarshal(wire, &m); err != nil {
			t.Fatal(err)
		}
		got := requestFromPB(&m)
		if len(got.Stop) == 0 {
			got.Stop = req.Stop // nil and empty are the same request
		}
		if len(got.Raw) == 0 {
			got.Raw = req.Raw
		}
		if !reflect.DeepEqual(got, req) {
			t.Errorf("round trip of %+v gave %+v", req, got)
		}
	}
}

func TestErrorRoundTrip(t *testing.T) {
	for _, e := range []*backend.Error{
		backend.Errorf(backend.CodeInvalidRequest, "prompt too long: %d tokens", 900),
		backend.Errorf(backend.CodeUnavailable, "loading"),
		backend.Errorf(backend.CodeTimeout, "upstream first byte"),
		backend.Errorf(backend.CodeUpstream, "upstream said 500"),
		{Code: backend.CodeUnavailable, Message: "rate limited", Status: 429},
	} {
		got := errorFromPB(errorToPB(e, func(string, ...any) { t.Error("logged a *backend.Error") }))
		if *got != *e {
			t.Errorf("round trip of %+v gave %+v", *e, *got)
		}
	}
	// A status outside the error range is not trusted.
	if got := errorFromPB(&pb.Error{Code: pb.ErrorCode_ERROR_CODE_TIMEOUT, Message: "m", HttpStatus: 200}); got.Status != 504 {
		t.Errorf("status %d, want 504", got.Status)
	}
}

func TestRestartBackoffSchedule(t *testing.T) {
	c := &client{}
	for _, tc := range []struct {
		fails int
		want  time.Duration
	}{
		{1, 0}, {2, 250 * time.Millisecond}, {3, 500 * time.Millisecond}, {4, time.Second},
		{8, 16 * time.Second}, {9, 30 * time.Second}, {40, 30 * time.Second}, {100, 30 * time.Second},
	} {
		fails, want := tc.fails, tc.want
		c.fails = fails - 1
		// Within [before, after] of the failure, however long a loaded machine took
		// to run failedLocked.
		before := time.Now()
		c.failedLocked()
		after := time.Now()
		if c.retryAt.Before(before.Add(want)) || c.retryAt.After(after.Add(want)) {
			t.Errorf("failure %d: next start in %v, want %v", fails, c.retryAt.Sub(before), want)
		}
	}
}

func TestLineLogger(t *testing.T) {
	var lines []string
	w := &lineLogger{log: func(l string) { lines = append(lines, l) }}
	long := strings.Repeat("x", maxLineBytes+1)
	for _, p := range []string{"one\ntw", "o\n", "\nthree", "\n", long} {
		fmt.Fprint(w, p)
	}
	want := []string{"one", "two", "", "three", long}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
}
