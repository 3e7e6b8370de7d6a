package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
)

var (
	hostKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
)

const pipelineID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// signedBody returns the Cocoon-Signature of a whole answer to request, by key.
func signedBody(key ed25519.PrivateKey, request []byte, status int, body string) string {
	req := sha256.Sum256(request)
	r := attest.SignedResponse{Kind: attest.ResponseBody, RequestSHA256: &req, PipelineID: pipelineID, Status: status, BodySHA256: sha256.Sum256([]byte(body))}
	return "ed25519=" + base64.StdEncoding.EncodeToString(r.Sign(key))
}

// signedStream returns a stream of events ("data: <e>\n\n"), signed by key, and
// "data: [DONE]".
func signedStream(key ed25519.PrivateKey, request []byte, events ...string) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("data: " + e + "\n\n")
	}
	req := sha256.Sum256(request)
	r := attest.SignedResponse{Kind: attest.ResponseStream, RequestSHA256: &req, PipelineID: pipelineID, Status: 200, BodySHA256: sha256.Sum256([]byte(b.String()))}
	b.Write(attest.SignatureEvent("ed25519=" + base64.StdEncoding.EncodeToString(r.Sign(key))))
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

func answerArgs(kind string, status int, signature string) []byte {
	b, _ := json.Marshal(AnswerArgs{HostKey: hostKey.Public().(ed25519.PublicKey), PipelineID: pipelineID, Kind: kind, Status: status, Signature: signature})
	return b
}

// TestCheckAnswer performs the attacks on an answer that opened but is not the host's
// answer to this request: altered, signed by another key, for another request,
// status or pipeline, a stream cut short or extended. Only the untouched answers pass,
// and a stream that passes gives exactly its data events.
func TestCheckAnswer(t *testing.T) {
	request := []byte(`{"messages":[{"role":"user","content":"hi"}]}`)
	body := `{"choices":[{"message":{"content":"hello"}}]}`
	events := []string{`{"choices":[{"delta":{"content":"hel"}}]}`, `{"choices":[{"delta":{"content":"lo"}}]}`}
	stream := signedStream(hostKey, request, events...)
	otherPipeline, _ := json.Marshal(AnswerArgs{HostKey: hostKey.Public().(ed25519.PublicKey), PipelineID: "", Kind: "body", Status: 200, Signature: signedBody(hostKey, request, 200, body)})
	for _, tc := range []struct {
		name            string
		args            []byte
		request, answer string
		ok              bool
	}{
		{"whole answer", answerArgs("body", 200, signedBody(hostKey, request, 200, body)), string(request), body, true},
		{"whole answer altered", answerArgs("body", 200, signedBody(hostKey, request, 200, body)), string(request), strings.Replace(body, "hello", "HELLO", 1), false},
		{"another key", answerArgs("body", 200, signedBody(otherKey, request, 200, body)), string(request), body, false},
		{"another request", answerArgs("body", 200, signedBody(hostKey, request, 200, body)), `{"messages":[]}`, body, false},
		{"another status", answerArgs("body", 500, signedBody(hostKey, request, 200, body)), string(request), body, false},
		{"another pipeline", otherPipeline, string(request), body, false},
		{"unsigned", answerArgs("body", 200, ""), string(request), body, false},
		{"stream", answerArgs("stream", 0, ""), string(request), stream, true},
		{"stream altered", answerArgs("stream", 0, ""), string(request), strings.Replace(stream, "hel", "HEL", 1), false},
		{"stream of another key", answerArgs("stream", 0, ""), string(request), signedStream(otherKey, request, events...), false},
		{"stream cut before its signature", answerArgs("stream", 0, ""), string(request), stream[:strings.Index(stream, `data: {"object"`)], false},
		{"stream extended", answerArgs("stream", 0, ""), string(request), stream + "data: {}\n\n", false},
		{"stream with an event dropped", answerArgs("stream", 0, ""), string(request), strings.Replace(stream, "data: "+events[1]+"\n\n", "", 1), false},
		{"no such kind", answerArgs("streams", 0, ""), string(request), stream, false},
		{"not JSON", []byte(`{"host_key":`), string(request), body, false},
		{"unknown member", []byte(`{"host_keys":""}`), string(request), body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r AnswerResult
			if err := json.Unmarshal(CheckAnswer(tc.args, []byte(tc.request), []byte(tc.answer)), &r); err != nil {
				t.Fatal(err)
			}
			if r.OK != tc.ok || (r.Error == "") != tc.ok {
				t.Fatalf("ok %v, error %q; want ok %v", r.OK, r.Error, tc.ok)
			}
			if tc.name == "stream" && strings.Join(r.Events, "|") != strings.Join(events, "|") {
				t.Fatalf("events %q, want %q", r.Events, events)
			}
		})
	}
}

// FuzzCheckAnswer: outside bytes never panic the verifier, and an answer passes only
// when it is the one the host signed.
func FuzzCheckAnswer(f *testing.F) {
	request := []byte(`{}`)
	stream := signedStream(hostKey, request, `{"choices":[]}`)
	f.Add([]byte(stream), true)
	f.Add([]byte(`{"a":1}`), false)
	f.Fuzz(func(t *testing.T, answer []byte, isStream bool) {
		kind, sig := "body", signedBody(hostKey, request, 200, `{"a":1}`)
		if isStream {
			kind, sig = "stream", ""
		}
		var r AnswerResult
		if err := json.Unmarshal(CheckAnswer(answerArgs(kind, 200, sig), request, answer), &r); err != nil {
			t.Fatal(err)
		}
		if r.OK && !(isStream && string(answer) == stream) && !(!isStream && string(answer) == `{"a":1}`) {
			t.Fatalf("an answer the host did not sign passed: %q", answer)
		}
	})
}

// testReceipt is a receipt of 10 prompt and 20 completion tokens signed by key.
func testReceipt(key ed25519.PrivateKey, prices settle.PriceTable) settle.Receipt {
	r := settle.Receipt{Account: "0:" + strings.Repeat("ab", 32), Seq: 1, RequestHash: strings.Repeat("cd", 32), Pipeline: pipelineID, Model: "m",
		Usage: settle.Usage{PromptTokens: 10, CompletionTokens: 20}, Prices: prices, LoadMilli: 1000, MaxCost: 1e9, Status: settle.StatusCompleted, Time: 1}
	r.Cost = prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
	r.Cumulative = r.Cost
	r.Sign(key)
	return r
}

// TestCheckReceipt: a receipt passes only when the attested settlement key signed it
// with the cost its usage gives, for this pipeline, account and request, at the prices
// of the host's price list (signed by the same key).
func TestCheckReceipt(t *testing.T) {
	prices := settle.PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 2e6}
	list := &settle.PriceList{Quote: settle.Quote{Prices: prices, LoadMilli: 1000}, Curve: settle.LoadCurve{MinMilli: 1000, MaxMilli: 2000}, Wallet: "0:" + strings.Repeat("01", 32)}
	list.Sign(hostKey)
	otherList := *list
	otherList.Prices.PromptPerMillion = 1
	otherList.Sign(hostKey)
	good := testReceipt(hostKey, prices)
	overcharged := good
	overcharged.Cost++
	overcharged.Cumulative++
	overcharged.Sign(hostKey)
	key := hostKey.Public().(ed25519.PublicKey)
	for _, tc := range []struct {
		name string
		args ReceiptArgs
		ok   bool
	}{
		{"good", ReceiptArgs{Receipt: good, SettlementKey: key, PriceList: list, PipelineID: pipelineID, Account: good.Account, RequestHash: good.RequestHash}, true},
		{"without what the caller does not know", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID}, true},
		{"another settlement key", ReceiptArgs{Receipt: testReceipt(otherKey, prices), SettlementKey: key, PipelineID: pipelineID}, false},
		{"no settlement key", ReceiptArgs{Receipt: good, PipelineID: pipelineID}, false},
		{"overcharged", ReceiptArgs{Receipt: overcharged, SettlementKey: key, PipelineID: pipelineID}, false},
		{"another pipeline", ReceiptArgs{Receipt: good, SettlementKey: key}, false},
		{"another account", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID, Account: "0:" + strings.Repeat("ef", 32)}, false},
		{"another request", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID, RequestHash: strings.Repeat("00", 32)}, false},
		{"prices not the price list's", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID, PriceList: &otherList}, false},
		{"price list of another key", ReceiptArgs{Receipt: good, SettlementKey: otherKey.Public().(ed25519.PublicKey), PipelineID: pipelineID, PriceList: list}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(tc.args)
			var r AnswerResult
			if err := json.Unmarshal(CheckReceipt(b), &r); err != nil {
				t.Fatal(err)
			}
			if r.OK != tc.ok {
				t.Fatalf("ok %v, error %q; want ok %v", r.OK, r.Error, tc.ok)
			}
		})
	}
}

// TestSignRequest: the headers SignRequest makes are what the host's billing parses and
// verifies with the client key, for this method, path and body only, and the request
// hash is the one the host's receipt names.
func TestSignRequest(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	body := []byte(`{"messages":[]}`)
	for _, tc := range []struct {
		name string
		key  []byte
		ok   bool
	}{{"seed", client.Seed(), true}, {"private key", client, true}, {"private key of a mismatched seed", append(otherKey.Seed(), client[32:]...), false}, {"short", client[:31], false}} {
		t.Run(tc.name, func(t *testing.T) {
			args, _ := json.Marshal(SignArgs{Account: "0:" + strings.Repeat("ab", 32), ClientKey: tc.key, Method: "POST", Path: "/v1/chat/completions"})
			var s SignedHeaders
			if err := json.Unmarshal(SignRequest(args, body), &s); err != nil {
				t.Fatal(err)
			}
			if (s.Error == "") != tc.ok {
				t.Fatalf("error %q, want ok %v", s.Error, tc.ok)
			}
			if !tc.ok {
				return
			}
			for _, path := range []string{"/v1/chat/completions", "/p/" + pipelineID + "/v1/chat/completions"} {
				r := httptest.NewRequest(http.MethodPost, path, nil)
				for k, v := range s.Headers {
					r.Header.Set(k, v)
				}
				req, sig, err := billing.ParseSignedRequest(r, body)
				if err != nil {
					t.Fatal(err)
				}
				verifies := ed25519.Verify(client.Public().(ed25519.PublicKey), req.SigningString(), sig)
				if verifies != (path == "/v1/chat/completions") {
					t.Fatalf("%s: verifies %v", path, verifies)
				}
				if verifies && settle.RequestHash(req.SigningString()) != s.RequestHash {
					t.Fatalf("request hash %s is not the signed request's", s.RequestHash)
				}
			}
		})
	}
}
