package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

var suites = []Suite{X25519, MLKEM768X25519}

const testPath = "/p/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/v1/chat/completions"

func testKeys(t testing.TB) *HostKeys {
	t.Helper()
	k, err := GenerateHostKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testRequest() Request {
	return Request{Header: http.Header{"Authorization": {"Bearer secret-key"}, "Idempotency-Key": {"k1"}},
		Body: []byte(`{"messages":[{"role":"user","content":"the secret prompt"}]}`)}
}

func sealTest(t testing.TB, k *HostKeys, s Suite) ([]byte, *Client) {
	t.Helper()
	env, c, err := SealRequest(s, k.Public().Key(s), http.MethodPost, testPath, testRequest())
	if err != nil {
		t.Fatal(err)
	}
	return env, c
}

// openedTest seals the test request to k's key of suite s and opens it: the host's
// and the client's sides of one request.
func openedTest(t testing.TB, k *HostKeys, s Suite) (*Opened, *Client) {
	t.Helper()
	env, c := sealTest(t, k, s)
	o, err := k.OpenRequest(http.MethodPost, testPath, env)
	if err != nil {
		t.Fatal(err)
	}
	return o, c
}

func TestRoundTrip(t *testing.T) {
	k := testKeys(t)
	for _, s := range suites {
		t.Run(s.Name, func(t *testing.T) {
			env, c := sealTest(t, k, s)
			if bytes.Contains(env, []byte("secret")) {
				t.Fatal("the envelope holds plaintext")
			}
			o, err := k.OpenRequest(http.MethodPost, testPath, env)
			if err != nil {
				t.Fatal(err)
			}
			want := testRequest()
			if !bytes.Equal(o.Body, want.Body) || o.Header.Get("Authorization") != "Bearer secret-key" || o.Header.Get("Idempotency-Key") != "k1" {
				t.Fatalf("opened %q %v", o.Body, o.Header)
			}
			if o.Suite.Name != s.Name || o.ID == [16]byte{} || time.Since(o.Time) > time.Minute {
				t.Fatalf("suite %s id %x time %v", o.Suite.Name, o.ID, o.Time)
			}
			sealed := o.SealBody(http.StatusTooManyRequests, http.Header{"Content-Type": {"application/json"}}, []byte(`{"answer":"the secret answer"}`))
			h, body, err := c.OpenBody(http.StatusTooManyRequests, sealed)
			if err != nil || string(body) != `{"answer":"the secret answer"}` || h.Get("Content-Type") != "application/json" {
				t.Fatalf("OpenBody = %v %q %v", h, body, err)
			}
			if _, _, err := c.OpenBody(http.StatusOK, sealed); !errors.Is(err, ErrE2E) {
				t.Fatalf("a body opened under another status: %v", err)
			}
			events := streamOf(o, []string{"data: one\n\n", "data: two\n\n", "data: [DONE]\n\n"})
			st, err := c.OpenStream(bytes.NewReader(events), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(st)
			if err != nil || string(got) != "data: one\n\ndata: two\n\ndata: [DONE]\n\n" || st.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("stream = %q %v %v", got, st.Header, err)
			}
		})
	}
}

// streamOf seals a stream of events, one record each, after a head record, and a
// final empty record.
func streamOf(o *Opened, events []string) []byte {
	var b bytes.Buffer
	b.Write(o.StreamRecord(0, false, ResponseHead(http.Header{"Content-Type": {"text/event-stream"}})))
	for i, e := range events {
		b.Write(o.StreamRecord(uint64(i+1), false, []byte(e)))
	}
	b.Write(o.StreamRecord(uint64(len(events)+1), true, nil))
	return b.Bytes()
}

// TestTamper flips every byte of a sealed request, a sealed answer and a sealed
// stream: each gives an error wrapping ErrE2E, never other text.
func TestTamper(t *testing.T) {
	k := testKeys(t)
	for _, s := range suites {
		t.Run(s.Name, func(t *testing.T) {
			env, c := sealTest(t, k, s)
			o, err := k.OpenRequest(http.MethodPost, testPath, env)
			if err != nil {
				t.Fatal(err)
			}
			for i := range env {
				bad := bytes.Clone(env)
				bad[i] ^= 0x01
				if _, err := k.OpenRequest(http.MethodPost, testPath, bad); !errors.Is(err, ErrE2E) {
					t.Fatalf("request byte %d flipped: %v", i, err)
				}
			}
			sealed := o.SealBody(200, http.Header{}, []byte("the answer"))
			for i := range sealed {
				bad := bytes.Clone(sealed)
				bad[i] ^= 0x80
				if _, _, err := c.OpenBody(200, bad); !errors.Is(err, ErrE2E) {
					t.Fatalf("answer byte %d flipped: %v", i, err)
				}
			}
			stream := streamOf(o, []string{"data: one\n\n", "data: two\n\n"})
			for i := range stream {
				bad := bytes.Clone(stream)
				bad[i] ^= 0x01
				if got, err := readStream(c, bad); err == nil {
					t.Fatalf("stream byte %d flipped: read %q without an error", i, got)
				}
			}
		})
	}
}

func readStream(c *Client, b []byte) ([]byte, error) {
	st, err := c.OpenStream(bytes.NewReader(b), 1<<20)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(st)
}

// TestStreamOrder: a stream with a record dropped, two swapped, cut before its final
// record, with bytes after it, or with a record marked final that was not sealed so
// (truncation dressed as an end), fails.
func TestStreamOrder(t *testing.T) {
	k := testKeys(t)
	o, c := openedTest(t, k, X25519)
	head := o.StreamRecord(0, false, ResponseHead(http.Header{}))
	r1, r2 := o.StreamRecord(1, false, []byte("data: one\n\n")), o.StreamRecord(2, false, []byte("data: two\n\n"))
	end := o.StreamRecord(3, true, nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for name, b := range map[string][]byte{
		"dropped":        cat(head, r2, end),
		"swapped":        cat(head, r2, r1, end),
		"truncated":      cat(head, r1, r2),
		"final early":    cat(head, r1, o.StreamRecord(2, true, nil)[len("event: final\n"):]),
		"after final":    cat(head, r1, r2, end, r1),
		"unmarked final": cat(head, r1, r2, end[len("event: final\n"):]),
		// A relay that marks a record final to end the stream early.
		"marked final": cat(head, r1, []byte("event: final\n"), r2),
	} {
		if got, err := readStream(c, b); !errors.Is(err, ErrE2E) {
			t.Errorf("%s: read %q, err %v", name, got, err)
		}
	}
	if got, err := readStream(c, cat(head, r1, r2, end)); err != nil || string(got) != "data: one\n\ndata: two\n\n" {
		t.Fatalf("intact stream: %q %v", got, err)
	}
}

// TestStreamLongRecords: records longer than the reader's buffer open whole, one after
// the other in the reused buffer, and a record over the limit fails rather than grow
// without bound.
func TestStreamLongRecords(t *testing.T) {
	o, c := openedTest(t, testKeys(t), X25519)
	long1, long2 := "data: "+strings.Repeat("a", 10<<10)+"\n\n", "data: "+strings.Repeat("b", 6<<10)+"\n\n"
	b := streamOf(o, []string{long1, "data: short\n\n", long2})
	if got, err := readStream(c, b); err != nil || string(got) != long1+"data: short\n\n"+long2 {
		t.Fatalf("read %d bytes, %v; want the three events", len(got), err)
	}
	if st, err := c.OpenStream(bytes.NewReader(b), 8<<10); err == nil {
		_, err = io.ReadAll(st)
		if !errors.Is(err, ErrE2E) || !strings.Contains(err.Error(), "over the limit") {
			t.Fatalf("a record over the limit: %v", err)
		}
	} else {
		t.Fatal(err)
	}
}

// TestRouteBinding: a request moved to another pipeline, route or method does not
// open; nor one sealed to another host's key.
func TestRouteBinding(t *testing.T) {
	k, other := testKeys(t), testKeys(t)
	env, _ := sealTest(t, k, MLKEM768X25519)
	for name, open := range map[string]func() error{
		"other pipeline": func() error {
			_, err := k.OpenRequest(http.MethodPost, strings.Replace(testPath, "0123", "3210", 1), env)
			return err
		},
		"bare route":  func() error { _, err := k.OpenRequest(http.MethodPost, "/v1/chat/completions", env); return err },
		"method":      func() error { _, err := k.OpenRequest(http.MethodPut, testPath, env); return err },
		"another key": func() error { _, err := other.OpenRequest(http.MethodPost, testPath, env); return err },
	} {
		if err := open(); !errors.Is(err, ErrE2E) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSealRefusesUnsealedHeaders(t *testing.T) {
	k := testKeys(t)
	req := testRequest()
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	if _, _, err := SealRequest(X25519, k.Public().X25519, http.MethodPost, testPath, req); !errors.Is(err, ErrE2E) {
		t.Fatalf("sealed a header outside SealedHeaders: %v", err)
	}
}

func TestReplayGuard(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	id := func(b byte) [16]byte { return [16]byte{b} }
	g := NewReplayGuard(time.Minute, 2)
	for _, s := range []struct {
		name      string
		principal string
		id        [16]byte
		t         time.Time
		now       time.Time
		want      error
	}{
		{"fresh", "a", id(1), now, now, nil},
		{"replayed", "a", id(1), now, now.Add(time.Second), ErrReplayed},
		{"replayed by another", "b", id(1), now, now.Add(time.Second), ErrReplayed},
		{"stale", "a", id(2), now.Add(-2 * time.Minute), now, ErrStale},
		{"from the future", "a", id(2), now.Add(2 * time.Minute), now, ErrStale},
		{"second", "a", id(2), now, now, nil},
		{"full", "a", id(3), now, now, ErrReplayCacheFull},
		// After one rotation the first ids are still remembered.
		{"replayed after rotation", "a", id(1), now.Add(time.Minute), now.Add(2 * time.Minute), ErrReplayed},
		{"new after rotation", "a", id(3), now.Add(2 * time.Minute), now.Add(2 * time.Minute), nil},
	} {
		if err := g.Check(s.principal, 0, s.id, s.t, s.now); !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", s.name, err, s.want)
		}
	}

	// A quota counts a principal's ids of the generation; others are not held back.
	q := NewReplayGuard(time.Minute, 10)
	for _, s := range []struct {
		name      string
		principal string
		id        [16]byte
		now       time.Time
		want      error
	}{
		{"within the quota", "q", id(1), now, nil},
		{"second within the quota", "q", id(2), now, nil},
		{"over the quota", "q", id(3), now, ErrReplayQuota},
		{"replay over the quota", "q", id(1), now, ErrReplayed},
		{"another principal", "r", id(3), now, nil},
		{"quota afresh after rotation", "q", id(4), now.Add(2 * time.Minute), nil},
	} {
		if err := q.Check(s.principal, 2, s.id, s.now, s.now); !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", s.name, err, s.want)
		}
	}
	if got := q.Rotation(now.Add(3 * time.Minute)); got != time.Minute {
		t.Errorf("Rotation a minute into a two-minute generation: %v, want 1m", got)
	}
}

func FuzzOpenRequest(f *testing.F) {
	k, err := HostKeysFromSeeds(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range suites {
		env, _, _ := SealRequest(s, k.Public().Key(s), http.MethodPost, testPath, testRequest())
		f.Add(env)
	}
	f.Add([]byte{1, 0, 0x20, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, env []byte) {
		o, err := k.OpenRequest(http.MethodPost, testPath, env)
		if err != nil && !errors.Is(err, ErrE2E) {
			t.Fatalf("error outside ErrE2E: %v", err)
		}
		if err == nil && o.Header == nil {
			t.Fatal("opened without headers")
		}
	})
}

func FuzzOpenStream(f *testing.F) {
	k, _ := HostKeysFromSeeds(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
	env, c, _ := SealRequest(X25519, k.Public().X25519, http.MethodPost, testPath, testRequest())
	o, _ := k.OpenRequest(http.MethodPost, testPath, env)
	f.Add(streamOf(o, []string{"data: one\n\n"}))
	f.Add([]byte("data: AAAA\n\nevent: final\ndata: \n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := readStream(c, b); err != nil && !errors.Is(err, ErrE2E) && err != io.ErrUnexpectedEOF {
			t.Fatalf("error outside ErrE2E: %v", err)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	k := testKeys(b)
	for _, s := range suites {
		b.Run(s.Name, func(b *testing.B) {
			for b.Loop() {
				env, c, _ := SealRequest(s, k.Public().Key(s), http.MethodPost, testPath, testRequest())
				o, err := k.OpenRequest(http.MethodPost, testPath, env)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.OpenBody(200, o.SealBody(200, http.Header{}, []byte("answer"))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAnswer is what sealing and opening an answer costs beyond the KEM, per
// request of BenchmarkHTTP's shape: a stream of a head, 16 token events, a signature
// event and a final record, framed as the host writes them and read as a client reads
// them; and a whole answer of the same text. The HPKE context is set up once.
func BenchmarkAnswer(b *testing.B) {
	k := testKeys(b)
	o, c := openedTest(b, k, X25519)
	event := []byte(`data: {"id":"chatcmpl-0123456789abcdef","object":"chat.completion.chunk","created":1764900000,"model":"stories260K","choices":[{"index":0,"delta":{"content":" once"},"finish_reason":null}]}` + "\n\n")
	signature := []byte("event: cocoon_signature\ndata: " + strings.Repeat("A", 400) + "\n\n")
	head := http.Header{"Content-Type": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		var wire bytes.Buffer
		var plain, out []byte // the host's two buffers, as web's sealedWriter reuses them
		record := func(seq uint64, final bool, b []byte) {
			plain = append(plain[:0], b...)
			out = o.AppendStreamRecord(out[:0], seq, final, plain)
			wire.Write(out)
		}
		for b.Loop() {
			wire.Reset()
			record(0, false, ResponseHead(head))
			for i := range 16 {
				record(uint64(i+1), false, event)
			}
			record(17, false, signature)
			record(18, true, nil)
			st, err := c.OpenStream(&wire, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, st); err != nil {
				b.Fatal(err)
			}
		}
	})
	whole := bytes.Repeat(event, 16)
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := c.OpenBody(200, o.SealBody(200, head, whole)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
