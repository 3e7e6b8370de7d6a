package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"testing"
	"time"
)

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
	if *updateVectors {
		file.Suites = nil
	}
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
		if *updateVectors {
			if v.Envelope, _, err = SealRequest(s, v.PublicKey, v.Method, v.Path, want); err != nil {
				t.Fatal(err)
			}
		} else {
			v.Envelope = file.Suites[i].Envelope
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
		for seq, p := range plains {
			final := seq == len(plains)-1
			v.StreamRecords = append(v.StreamRecords, vectorRecord{final, p, string(o.StreamRecord(uint64(seq), final, p))})
		}
		if *updateVectors {
			file.Suites = append(file.Suites, v)
			continue
		}
		got, _ := json.Marshal(v)
		stored, _ := json.Marshal(file.Suites[i])
		if !bytes.Equal(got, stored) {
			t.Errorf("%s: the vectors differ from what this code computes:\n got %s\nfile %s", s.Name, got, stored)
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
