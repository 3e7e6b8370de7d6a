package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// vectorStream seals plains as the records of a streamed answer of o, the last final.
func vectorStream(o *Opened, plains [][]byte) []vectorRecord {
	var out []vectorRecord
	for seq, p := range plains {
		final := seq == len(plains)-1
		out = append(out, vectorRecord{final, p, string(o.StreamRecord(uint64(seq), final, p))})
	}
	return out
}

// sessionVector computes suite s's session vector for the suite vector v (its answer's
// headers h and stream plaintexts): the establishing envelope is sealed anew when
// envelope is nil (-update-vectors), else the stored one is opened; the rest follows.
func sessionVector(t *testing.T, k *HostKeys, s Suite, v vectorSuite, h http.Header, plains [][]byte, envelope []byte) vectorSession {
	req := vectorRequest()
	req.ID[15], req.Session = 2, true
	vs := vectorSession{EstablishingRequestID: hex.EncodeToString(req.ID[:]),
		EstablishingRequestPlaintext: frame(requestMeta{ID: hex.EncodeToString(req.ID[:]), Time: v.RequestTime, Headers: v.RequestHeaders, Session: true}, req.Body),
		EstablishingEnvelope:         envelope}
	if envelope == nil {
		var err error
		if vs.EstablishingEnvelope, _, err = SealRequest(s, v.PublicKey, v.Method, v.Path, req); err != nil {
			t.Fatal(err)
		}
	}
	table := NewSessionTable(SessionCapacity, SessionsPerPrincipal)
	now := req.Time
	est, err := k.Open(table, v.Method, v.Path, vs.EstablishingEnvelope, now)
	if err != nil || !est.Session || est.grant == nil || est.ID != req.ID {
		t.Fatalf("%s: the establishing envelope opens to %+v, %v", s.Name, est, err)
	}
	if ttl, ok := table.Grant(est, "key:vectors", now); !ok || ttl != SessionLifetime {
		t.Fatalf("%s: no session granted", s.Name)
	}
	vs.SessionID, vs.SessionSecret = est.grant.ID[:], est.grant.Secret[:]
	// The name as the head carries it: net/http's canonical form, Cocoon-E2e-Session.
	vs.GrantHeaders = map[string]string{http.CanonicalHeaderKey(SessionHeader): strconv.Itoa(int(SessionLifetime.Seconds()))}
	for name, val := range v.BodyHeaders {
		vs.GrantHeaders[name] = val
	}
	grant := http.Header{}
	for name, val := range vs.GrantHeaders {
		grant.Set(name, val)
	}
	vs.GrantSealedBody = est.SealBody(v.BodyStatus, grant, []byte(v.Body))

	sreq := vectorRequest()
	sreq.ID[15] = 3
	vs.RequestID = hex.EncodeToString(sreq.ID[:])
	vs.RequestPlaintext = frame(requestMeta{ID: vs.RequestID, Time: v.RequestTime, Headers: v.RequestHeaders}, sreq.Body)
	sch := newSessionSchedule(&est.grant.Secret, sreq.ID, v.Method, v.Path)
	vs.Context, vs.PRK = sch.ctx, sch.prk
	for _, e := range []struct {
		dst   *hexBytes
		label string
		n     int
	}{{&vs.RequestKey, sessionKeyLabel, 32}, {&vs.RequestNonce, sessionNonceLabel, 12}, {&vs.ResponseKey, responseKeyLabel, 32}, {&vs.ResponseNonce, responseNonceLabel, 12}} {
		*e.dst, _ = sch.Export(e.label, e.n)
	}
	env, _, err := sealSession(est.grant, v.Method, v.Path, &sreq)
	if err != nil {
		t.Fatal(err)
	}
	vs.Envelope = env
	o, err := k.Open(table, v.Method, v.Path, env, now)
	if err != nil || o.ID != sreq.ID || !bytes.Equal(o.Body, sreq.Body) || o.Suite.Name != s.Name {
		t.Fatalf("%s: the session envelope opens to %+v, %v", s.Name, o, err)
	}
	vs.SealedBody = o.SealBody(v.BodyStatus, h, []byte(v.Body))
	vs.StreamRecords = vectorStream(o, plains)
	return vs
}

// The shared test vectors of web/E2E.md, checked by this test and by the JavaScript
// one (js/test.mjs). `go test ./web/e2e -run TestVectors -update-vectors` writes a new
// Go-sealed request (HPKE's ephemeral key is random); everything else is recomputed
// and must match. js_request is sealed by @hpke/core with a fixed ephemeral seed
// (`UPDATE=1 npm test --prefix web/e2e/js` rewrites it); this test opens it.
var updateVectors = flag.Bool("update-vectors", false, "write testdata/vectors.json anew")

const vectorsPath = "testdata/vectors.json"

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type vectorRecord struct {
	Final     bool     `json:"final"`
	Plaintext hexBytes `json:"plaintext"`
	Event     string   `json:"event"`
}

type vectorSuite struct {
	Suite            string            `json:"suite"`
	KEMID            uint16            `json:"kem_id"`
	KDFID            uint16            `json:"kdf_id"`
	AEADID           uint16            `json:"aead_id"`
	IKM              hexBytes          `json:"ikm"`
	PublicKey        hexBytes          `json:"public_key"`
	Method           string            `json:"method"`
	Path             string            `json:"path"`
	Info             hexBytes          `json:"info"`
	RequestID        string            `json:"request_id"`
	RequestTime      int64             `json:"request_time"`
	RequestHeaders   map[string]string `json:"request_headers"`
	RequestBody      string            `json:"request_body"`
	RequestPlaintext hexBytes          `json:"request_plaintext"`
	Envelope         hexBytes          `json:"envelope"`
	BodyStatus       int               `json:"body_status"`
	BodyHeaders      map[string]string `json:"body_headers"`
	Body             string            `json:"body"`
	BodyPlaintext    hexBytes          `json:"body_plaintext"`
	SealedBody       hexBytes          `json:"sealed_body"`
	StreamRecords    []vectorRecord    `json:"stream_records"`
	Session          vectorSession     `json:"session"`
}

// vectorSession is a suite's session (web/E2E.md §8): a version 1 request asking for
// one (its envelope sealed by Go, so random like the suite's envelope), the session id
// and secret both sides export from its context, its answer granting the session, and
// a session envelope (deterministic: its rid is fixed) with the key schedule and the
// answer sealed under it, for the suite's body_status, body_headers, body and stream
// plaintexts.
type vectorSession struct {
	EstablishingRequestID        string            `json:"establishing_request_id"`
	EstablishingRequestPlaintext hexBytes          `json:"establishing_request_plaintext"`
	EstablishingEnvelope         hexBytes          `json:"establishing_envelope"`
	SessionID                    hexBytes          `json:"session_id"`
	SessionSecret                hexBytes          `json:"session_secret"`
	GrantHeaders                 map[string]string `json:"grant_headers"`
	GrantSealedBody              hexBytes          `json:"grant_sealed_body"`
	RequestID                    string            `json:"request_id"`
	RequestPlaintext             hexBytes          `json:"request_plaintext"`
	Context                      hexBytes          `json:"context"`
	PRK                          hexBytes          `json:"prk"`
	RequestKey                   hexBytes          `json:"request_key"`
	RequestNonce                 hexBytes          `json:"request_nonce"`
	ResponseKey                  hexBytes          `json:"response_key"`
	ResponseNonce                hexBytes          `json:"response_nonce"`
	Envelope                     hexBytes          `json:"envelope"`
	SealedBody                   hexBytes          `json:"sealed_body"`
	StreamRecords                []vectorRecord    `json:"stream_records"`
}

type vectorFile struct {
	Version   int           `json:"version"`
	Note      string        `json:"note"`
	Suites    []vectorSuite `json:"suites"`
	JSRequest struct {
		Suite            string   `json:"suite"`
		EphemeralIKM     hexBytes `json:"ephemeral_ikm"`
		RequestPlaintext hexBytes `json:"request_plaintext"`
		Envelope         hexBytes `json:"envelope"`
	} `json:"js_request"`
}

var vectorIKM = map[string][]byte{"x25519": bytes.Repeat([]byte{0x11}, 32), "mlkem768x25519": bytes.Repeat([]byte{0x22}, 32)}

func vectorKeys(t *testing.T) *HostKeys {
	k, err := HostKeysFromSeeds(vectorIKM["x25519"], vectorIKM["mlkem768x25519"])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func vectorRequest() Request {
	return Request{ID: [16]byte{0: 0xc0, 1: 0xc0, 15: 1}, Time: time.Unix(1_800_000_000, 0),
		Header: http.Header{"Authorization": {"Bearer sk-vector"}, "Content-Type": {"application/json"}},
		Body:   []byte(`{"messages":[{"role":"user","content":"a prompt only the TD reads"}],"stream":true}`)}
}

func TestVectors(t *testing.T) {
	k := vectorKeys(t)
	var file vectorFile
	b, err := os.ReadFile(vectorsPath)
	if err == nil {
		err = json.Unmarshal(b, &file)
	}
	if err != nil && !*updateVectors {
		t.Fatalf("%s: %v (go test ./web/e2e -run TestVectors -update-vectors writes it)", vectorsPath, err)
	}
	// -update-vectors keeps the sealed envelopes already written (HPKE's are random)
	// and seals those missing.
	old := file.Suites
	file.Suites = nil
	const path = "/p/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/v1/chat/completions"
	for i, s := range suites {
		want := vectorRequest()
		v := vectorSuite{Suite: s.Name, KEMID: s.KEMID(), KDFID: 1, AEADID: 2, IKM: vectorIKM[s.Name], PublicKey: k.Public().Key(s),
			Method: http.MethodPost, Path: path, Info: info(http.MethodPost, path), RequestID: hex.EncodeToString(want.ID[:]),
			RequestTime: want.Time.Unix(), RequestHeaders: map[string]string{}, RequestBody: string(want.Body),
			BodyStatus: 200, BodyHeaders: map[string]string{"Content-Type": "application/json", "Cocoon-Signature": "ed25519=AAAA"},
			Body: `{"object":"chat.completion","choices":[{"message":{"content":"an answer only the client reads"}}]}`}
		for name, vals := range want.Header {
			v.RequestHeaders[name] = vals[0]
		}
		v.RequestPlaintext = frame(requestMeta{ID: v.RequestID, Time: v.RequestTime, Headers: v.RequestHeaders}, want.Body)
		var stored vectorSuite
		if i < len(old) {
			stored = old[i]
		} else if !*updateVectors {
			t.Fatalf("%s: no vectors of suite %s", vectorsPath, s.Name)
		}
		if v.Envelope = stored.Envelope; v.Envelope == nil {
			if v.Envelope, _, err = SealRequest(s, v.PublicKey, v.Method, v.Path, want); err != nil {
				t.Fatal(err)
			}
		}
		o, err := k.OpenRequest(v.Method, v.Path, v.Envelope)
		if err != nil {
			t.Fatalf("%s: the vector's envelope does not open: %v", s.Name, err)
		}
		if o.ID != want.ID || !o.Time.Equal(want.Time) || !bytes.Equal(o.Body, want.Body) || o.Header.Get("Authorization") != "Bearer sk-vector" {
			t.Fatalf("%s: opened %+v", s.Name, o.Request)
		}
		h := http.Header{}
		for name, val := range v.BodyHeaders {
			h.Set(name, val)
		}
		v.BodyPlaintext = append(ResponseHead(h), v.Body...)
		v.SealedBody = o.SealBody(v.BodyStatus, h, []byte(v.Body))
		plains := [][]byte{ResponseHead(http.Header{"Content-Type": {"text/event-stream"}}),
			[]byte("data: {\"choices\":[{\"delta\":{\"content\":\"an answer\"}}]}\n\n"), []byte("data: [DONE]\n\n"), nil}
		v.StreamRecords = vectorStream(o, plains)
		v.Session = sessionVector(t, k, s, v, h, plains, stored.Session.EstablishingEnvelope)
		file.Suites = append(file.Suites, v)
		if *updateVectors {
			continue
		}
		got, _ := json.Marshal(v)
		inFile, _ := json.Marshal(stored)
		if !bytes.Equal(got, inFile) {
			t.Errorf("%s: the vectors differ from what this code computes:\n got %s\nfile %s", s.Name, got, inFile)
		}
	}
	if *updateVectors {
		file.Version, file.Note = Version, "web/E2E.md's test vectors; all bytes hex. Written by web/e2e/vectors_test.go and checked by it and by web/e2e/js/test.mjs."
		out, _ := json.MarshalIndent(file, "", "  ")
		if err := os.WriteFile(vectorsPath, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The request @hpke/core sealed opens here, to its plaintext.
	js := file.JSRequest
	if js.Envelope == nil {
		t.Fatal("js_request is missing: UPDATE=1 npm test --prefix web/e2e/js writes it")
	}
	o, err := k.OpenRequest(http.MethodPost, path, js.Envelope)
	if err != nil {
		t.Fatalf("the JavaScript-sealed request does not open: %v", err)
	}
	if got := frame(requestMeta{ID: hex.EncodeToString(o.ID[:]), Time: o.Time.Unix(), Headers: map[string]string{
		"Authorization": o.Header.Get("Authorization"), "Content-Type": o.Header.Get("Content-Type")}}, o.Body); !bytes.Equal(got, js.RequestPlaintext) {
		t.Fatalf("the JavaScript-sealed request opened to %q, want %q", got, js.RequestPlaintext)
	}
}
