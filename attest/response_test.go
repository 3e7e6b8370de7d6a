package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// responseKey is the key of the golden vectors: ed25519 from a seed of 32 bytes 0x01.
var responseKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))

func responsePub() ed25519.PublicKey { return responseKey.Public().(ed25519.PublicKey) }

func sum(b string) *[32]byte {
	h := sha256.Sum256([]byte(b))
	return &h
}

// The golden messages and signatures were computed independently with Python's hashlib,
// struct and the cryptography package, from the encoding in README.md.
func TestSignedResponseGolden(t *testing.T) {
	stream := "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n"
	tests := []struct {
		name         string
		r            SignedResponse
		message, sig string
	}{
		{"a completion", SignedResponse{Kind: ResponseBody, RequestSHA256: sum(`{"messages":[]}`), PipelineID: strings.Repeat("ab", 32),
			Status: 200, BodySHA256: *sum("{\"ok\":true}\n")},
			"00000017636f636f6f6e2d686f737420726573706f6e736520763200000004626f6479000000205e4ce7b36ba37b78a5d5f9fd08e6b7b54ba6879d651aa46ec9e1d6fa24ebe30a00000040616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261620000000200c80000000000000020e5f1eb4d806641698a35efe20e098efd20d7d57a9b90ee69079d5bb650920726",
			"Slv2bAE0qpFWZGlDhRiVtKlL9rCoE/iy3yAJRfufK/SQ0gUh/YVpcaIYTv3+oYSTZicEFeNasnWB93Fv1FGMDQ=="},
		{"an error before the body was read", SignedResponse{Kind: ResponseBody, Status: 429, RetryAfter: "1", BodySHA256: *sum("{\"error\":{}}\n")},
			"00000017636f636f6f6e2d686f737420726573706f6e736520763200000004626f647900000000000000000000000201ad00000001310000002083af77d60c9884fa9518f42366182d917c8edc8cd7a9988af447d29b437a4e63",
			"/djSyJ2LQ8AJxUlGuxaX2IxoHF5NoovYroqc1dUfSpK2x72uuypys33g7ny9due7qqzV3g7h2QqQ47vwyE3VDA=="},
		{"a stream", SignedResponse{Kind: ResponseStream, RequestSHA256: sum(`{"stream":true}`), Status: 200, BodySHA256: *sum(stream)},
			"00000017636f636f6f6e2d686f737420726573706f6e73652076320000000673747265616d00000020cf8db77a15bbcc48ba1b0836d18c5875053b7f036993b5ef66d2f1ec8150dd3a000000000000000200c80000000000000020f4aac154d64a14471d2d27e1262ff5c76e41fcb3a6833af3a39b9ccfab123f33",
			"mryygHW8Rt6C/WTMu8jmmRLNpfiCfMI8mvGdbFb2GYbPHCOLkohoi0haojedJ7nZpNQKHFjAM7cDSwE0iBVJCg=="},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.r.Message()); got != tt.message {
			t.Errorf("%s: message\n%s, want\n%s", tt.name, got, tt.message)
		}
		if got := base64.StdEncoding.EncodeToString(tt.r.Sign(responseKey)); got != tt.sig {
			t.Errorf("%s: signature %s, want %s", tt.name, got, tt.sig)
		}
	}
}

// TestHostSignResponse: the host's signature value is "ed25519=<base64>" by its host
// key, and verifies over what it signed and nothing else.
func TestHostSignResponse(t *testing.T) {
	h, _ := bootTestHost(t)
	body := []byte(`{"choices":[]}`)
	v := ResponseVerifier{HostKey: h.PublicKey(), Request: []byte("req"), PipelineID: "abc"}
	value := h.SignResponse(v.signed(ResponseBody, 200, "", sha256.Sum256(body)))
	if !strings.HasPrefix(value, "ed25519=") {
		t.Fatalf("%q has no ed25519= prefix", value)
	}
	if err := v.VerifyBody(200, "", body, value); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyBody(200, "", append(body, ' '), value); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("verifies over another body: %v", err)
	}
}

// TestSignedResponseFields: a signature covers every field; an answer bound to no
// request is not one bound to the request whose hash is all zeros.
func TestSignedResponseFields(t *testing.T) {
	r := SignedResponse{Kind: ResponseBody, RequestSHA256: sum("req"), PipelineID: "ab", Status: 200, BodySHA256: *sum("body")}
	sig := r.Sign(responseKey)
	if !r.Verify(responsePub(), sig) {
		t.Fatal("a good signature does not verify")
	}
	for name, change := range map[string]func(*SignedResponse){
		"kind":              func(r *SignedResponse) { r.Kind = ResponseStream },
		"request":           func(r *SignedResponse) { r.RequestSHA256 = sum("req2") },
		"no request":        func(r *SignedResponse) { r.RequestSHA256 = nil },
		"pipeline":          func(r *SignedResponse) { r.PipelineID = "ac" },
		"status":            func(r *SignedResponse) { r.Status = 201 },
		"retry-after":       func(r *SignedResponse) { r.RetryAfter = "1" },
		"body":              func(r *SignedResponse) { r.BodySHA256[0] ^= 1 },
		"pipeline for kind": func(r *SignedResponse) { r.Kind, r.PipelineID = "bodyab", "" },
	} {
		changed := r
		change(&changed)
		if changed.Verify(responsePub(), sig) {
			t.Errorf("a signature verifies over a changed %s", name)
		}
	}
	zero := r
	zero.RequestSHA256 = new([32]byte)
	unbound := r
	unbound.RequestSHA256 = nil
	if bytes.Equal(zero.Message(), unbound.Message()) {
		t.Error("no request encodes as the request hash 0")
	}
	if r.Verify(responsePub()[:31], sig) {
		t.Error("a short key verifies")
	}
}

// sign is the Cocoon-Signature value of r by responseKey.
func sign(r SignedResponse) string {
	return signatureScheme + base64.StdEncoding.EncodeToString(r.Sign(responseKey))
}

func TestVerifyBody(t *testing.T) {
	request, pipeline := []byte(`{"messages":[{"role":"user","content":"hi"}]}`), strings.Repeat("cd", 32)
	v := ResponseVerifier{HostKey: responsePub(), Request: request, PipelineID: pipeline}
	body := []byte(`{"choices":[{"message":{"content":"Hello"},"finish_reason":"stop"}],"model":"m"}` + "\n")
	bound := v.signed(ResponseBody, 200, "", sha256.Sum256(body))
	errorBody := []byte(`{"error":{"message":"at capacity","type":"rate_limit_error","code":"over_capacity"}}` + "\n")
	unbound := SignedResponse{Kind: ResponseBody, PipelineID: pipeline, Status: 429, RetryAfter: "1", BodySHA256: sha256.Sum256(errorBody)}
	if err := v.VerifyBody(200, "", body, sign(bound)); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyBody(429, "1", errorBody, sign(unbound)); err != nil {
		t.Fatalf("an error signed before the body was read: %v", err)
	}
	sig := bound.Sign(responseKey)
	nonCanonical := base64.StdEncoding.EncodeToString(sig)
	nonCanonical = nonCanonical[:len(nonCanonical)-3] + string(nonCanonical[len(nonCanonical)-3]+1) + "=="
	asStream := bound
	asStream.Kind = ResponseStream
	other := v
	other.HostKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)).Public().(ed25519.PublicKey)
	tests := []struct {
		name       string
		v          ResponseVerifier
		status     int
		retryAfter string
		body       []byte
		header     string
		mismatch   bool
	}{
		{"finish_reason changed", v, 200, "", bytes.Replace(body, []byte(`"stop"`), []byte(`"length"`), 1), sign(bound), true},
		{"model changed", v, 200, "", bytes.Replace(body, []byte(`"m"`), []byte(`"n"`), 1), sign(bound), true},
		{"a choice added", v, 200, "", bytes.Replace(body, []byte(`}],`), []byte(`},{"message":{"content":"x"}}],`), 1), sign(bound), true},
		{"whitespace added", v, 200, "", append(bytes.Clone(body), ' '), sign(bound), true},
		{"status changed", v, 201, "", body, sign(bound), true},
		{"Retry-After added", v, 200, "5", body, sign(bound), true},
		{"another request", ResponseVerifier{v.HostKey, append(bytes.Clone(request), ' '), pipeline}, 200, "", body, sign(bound), true},
		{"another pipeline", ResponseVerifier{v.HostKey, request, ""}, 200, "", body, sign(bound), true},
		{"another host key", other, 200, "", body, sign(bound), true},
		{"a stream's signature on a body", v, 200, "", body, sign(asStream), true},
		{"an unbound signature on a success", v, 200, "", body, sign(SignedResponse{Kind: ResponseBody, PipelineID: pipeline, Status: 200, BodySHA256: sha256.Sum256(body)}), true},
		{"an unbound error's Retry-After changed", v, 429, "60", errorBody, sign(unbound), true},
		{"no signature", v, 200, "", body, "", false},
		{"no scheme", v, 200, "", body, base64.StdEncoding.EncodeToString(sig), false},
		{"not base64", v, 200, "", body, "ed25519=!!", false},
		{"short signature", v, 200, "", body, "ed25519=" + base64.StdEncoding.EncodeToString(sig[:63]), false},
		{"non-canonical base64", v, 200, "", body, "ed25519=" + nonCanonical, false},
	}
	for _, tt := range tests {
		err := tt.v.VerifyBody(tt.status, tt.retryAfter, tt.body, tt.header)
		if !errors.Is(err, ErrResponseSignature) || errors.Is(err, ErrSignatureMismatch) != tt.mismatch {
			t.Errorf("%s: %v, want ErrResponseSignature (mismatch %v)", tt.name, err, tt.mismatch)
		}
	}
}

// frame makes events of data, as a host frames them.
func frame(data ...string) string {
	var b strings.Builder
	for _, d := range data {
		b.WriteString("data: " + d + "\n\n")
	}
	return b.String()
}

// signedStream is what a host sends for events: the events, the signature event over
// them by key for v's request and pipeline, and [DONE] unless the last event is an
// error. It is written here from the README's description, apart from the host's code.
func signedStream(key ed25519.PrivateKey, v ResponseVerifier, events ...string) string {
	body := frame(events...)
	r := v.signed(ResponseStream, 200, "", sha256.Sum256([]byte(body)))
	body += `data: {"object":"chat.completion.chunk","choices":[],"cocoon_signature":"ed25519=` +
		base64.StdEncoding.EncodeToString(r.Sign(key)) + "\"}\n\n"
	if !strings.HasPrefix(events[len(events)-1], `{"error":`) {
		body += "data: [DONE]\n\n"
	}
	return body
}

// readAll reads a stream to its end and returns the kinds of its events.
func readAll(s *SignedStream) ([]StreamEventKind, error) {
	var kinds []StreamEventKind
	for {
		ev, err := s.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return kinds, err
		}
		if !bytes.Equal(ev.Raw, []byte("data: "+string(ev.Data)+"\n\n")) {
			return kinds, errors.New("Raw is not Data framed")
		}
		kinds = append(kinds, ev.Kind)
	}
}

var (
	chunk1  = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}`
	chunk2  = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}`
	finish  = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
	receipt = `{"object":"chat.completion.chunk","choices":[],"cocoon_receipt":{"seq":1}}`
	failure = `{"error":{"message":"backend: the GPU server went away","type":"backend_error","param":null,"code":"upstream_error"}}`
)

// TestSignedStream performs the attacks on a stream between the host and a client:
// every event altered, dropped, added, reordered, or the end moved, is refused.
func TestSignedStream(t *testing.T) {
	v := ResponseVerifier{HostKey: responsePub(), Request: []byte(`{"stream":true}`), PipelineID: strings.Repeat("ef", 32)}
	good := signedStream(responseKey, v, chunk1, chunk2, finish, receipt)
	failed := signedStream(responseKey, v, chunk1, failure)
	for name, tt := range map[string]struct {
		stream string
		kinds  []StreamEventKind
	}{
		"completed": {good, []StreamEventKind{EventData, EventData, EventData, EventData, EventSignature, EventDone}},
		"failed":    {failed, []StreamEventKind{EventData, EventData, EventSignature}},
	} {
		kinds, err := readAll(v.ReadStream(strings.NewReader(tt.stream), 1<<10))
		if err != nil || !slices.Equal(kinds, tt.kinds) {
			t.Fatalf("%s: %v, kinds %v", name, err, kinds)
		}
	}
	sigEvent := good[strings.Index(good, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"cocoon_signature\""):strings.Index(good, "data: [DONE]")]
	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	tests := []struct {
		name     string
		stream   string
		v        ResponseVerifier
		mismatch bool
	}{
		{"finish_reason changed", strings.Replace(good, `"stop"`, `"length"`, 1), v, true},
		{"content changed", strings.Replace(good, `"lo"`, `"LO"`, 1), v, true},
		{"a choice added", strings.Replace(good, `"finish_reason":null}]`, `"finish_reason":null},{"index":1,"delta":{"content":"x"}}]`, 1), v, true},
		{"an event dropped", strings.Replace(good, frame(chunk2), "", 1), v, true},
		{"the receipt dropped", strings.Replace(good, frame(receipt), "", 1), v, true},
		{"two events swapped", strings.Replace(good, frame(chunk1, chunk2), frame(chunk2, chunk1), 1), v, true},
		{"an event added", strings.Replace(good, frame(finish), frame(chunk2, finish), 1), v, true},
		{"the error event dropped", strings.Replace(failed, frame(failure), "", 1), v, true},
		{"another request", good, ResponseVerifier{v.HostKey, []byte(`{"stream":false}`), v.PipelineID}, true},
		{"another pipeline", good, ResponseVerifier{v.HostKey, v.Request, ""}, true},
		{"signed by another key", signedStream(otherKey, v, chunk1, finish), v, true},
		{"an event after the signature", strings.Replace(good, "data: [DONE]", frame(chunk2)+"data: [DONE]", 1), v, false},
		{"an event after [DONE]", good + frame(chunk2), v, false},
		{"[DONE] after an error", failed + frame("[DONE]"), v, false},
		{"no [DONE] after a completed stream", strings.TrimSuffix(good, frame("[DONE]")), v, false},
		{"[DONE] before the signature", strings.Replace(good, sigEvent, "", 1), v, false},
		{"no signature event", strings.Replace(strings.Replace(good, sigEvent, "", 1), frame("[DONE]"), "", 1), v, false},
		{"cut inside an event", good[:len(good)/2], v, false},
		{"cut before the end of an event", strings.TrimSuffix(good, "\n"), v, false},
		{"a comment line", ": ping\n\n" + good, v, false},
		{"no space after data:", strings.Replace(good, "data: ", "data:", 1), v, false},
		{"CRLF line ends", strings.ReplaceAll(good, "\n", "\r\n"), v, false},
		{"an event field", "event: x\n" + good, v, false},
		{"two data lines in an event", strings.Replace(good, "\n\n", "\n", 1), v, false},
		{"a member added to the signature event", strings.Replace(good, `"cocoon_signature"`, `"x":1,"cocoon_signature"`, 1), v, false},
		{"the signature event's end changed", strings.Replace(good, "==\"}\n\n", "==\" }\n\n", 1), v, false},
		{"an event over the limit", signedStream(responseKey, v, `{"content":"`+strings.Repeat("x", 2000)+`"}`), v, false},
	}
	for _, tt := range tests {
		_, err := readAll(tt.v.ReadStream(strings.NewReader(tt.stream), 1<<10))
		if !errors.Is(err, ErrResponseSignature) || errors.Is(err, ErrSignatureMismatch) != tt.mismatch {
			t.Errorf("%s: %v, want ErrResponseSignature (mismatch %v)", tt.name, err, tt.mismatch)
		}
	}
}

// TestRetryWithKey: a stream signed by a key the client does not know yet (the host
// restarted) is checked again with the key of fresh evidence, and goes on.
func TestRetryWithKey(t *testing.T) {
	newKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	v := ResponseVerifier{HostKey: responsePub(), Request: []byte(`{}`)}
	s := v.ReadStream(strings.NewReader(signedStream(newKey, v, chunk1, finish)), 1<<10)
	kinds, err := readAll(s)
	if !errors.Is(err, ErrSignatureMismatch) || len(kinds) != 2 {
		t.Fatalf("%v %v", kinds, err)
	}
	if _, err := s.RetryWithKey(responsePub()); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("the same key again: %v", err)
	}
	ev, err := s.RetryWithKey(newKey.Public().(ed25519.PublicKey))
	if err != nil || ev.Kind != EventSignature {
		t.Fatalf("%+v %v", ev, err)
	}
	if kinds, err := readAll(s); err != nil || len(kinds) != 1 || kinds[0] != EventDone {
		t.Fatalf("after the retry: %v %v", kinds, err)
	}
	if _, err := s.RetryWithKey(responsePub()); !errors.Is(err, ErrResponseSignature) {
		t.Fatalf("a retry of a verified stream: %v", err)
	}
}

// FuzzSignedStream feeds a verifier mutations of a signed stream: it must never panic,
// and must accept nothing but the signed bytes, byte for byte.
func FuzzSignedStream(f *testing.F) {
	v := ResponseVerifier{HostKey: responsePub(), Request: []byte(`{"stream":true}`)}
	good := signedStream(responseKey, v, chunk1, chunk2, finish, receipt)
	failed := signedStream(responseKey, v, chunk1, failure)
	f.Add([]byte(good))
	f.Add([]byte(failed))
	f.Add([]byte(good[:len(good)-7]))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := readAll(v.ReadStream(bytes.NewReader(b), 1<<12)); err == nil && string(b) != good && string(b) != failed {
			t.Fatalf("accepted a stream that is not the signed one:\n%q", b)
		}
	})
}

// FuzzVerifyBody: a verifier accepts no status, Retry-After, body or header but the
// signed ones.
func FuzzVerifyBody(f *testing.F) {
	v := ResponseVerifier{HostKey: responsePub(), Request: []byte(`{}`)}
	body := `{"choices":[{"message":{"content":"Hello"},"finish_reason":"stop"}]}`
	header := sign(v.signed(ResponseBody, 200, "", sha256.Sum256([]byte(body))))
	errorBody := `{"error":{"code":"over_capacity"}}`
	errorHeader := sign(SignedResponse{Kind: ResponseBody, Status: 429, RetryAfter: "1", BodySHA256: sha256.Sum256([]byte(errorBody))})
	f.Add(200, "", []byte(body), header)
	f.Add(429, "1", []byte(errorBody), errorHeader)
	f.Fuzz(func(t *testing.T, status int, retryAfter string, b []byte, h string) {
		if v.VerifyBody(status, retryAfter, b, h) != nil {
			return
		}
		if !(status == 200 && retryAfter == "" && string(b) == body && h == header) &&
			!(status == 429 && retryAfter == "1" && string(b) == errorBody && h == errorHeader) {
			t.Fatalf("accepted %d %q %q %q", status, retryAfter, b, h)
		}
	})
}
