package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

// failed is a result of T or its failure, decoded.
type failed[T any] struct {
	Value T
	Error string `json:"error"`
}

func (f *failed[T]) UnmarshalJSON(b []byte) error {
	var e failure
	if err := json.Unmarshal(b, &e); err != nil {
		return err
	}
	f.Error = e.Error
	return json.Unmarshal(b, &f.Value)
}

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
		{"an answer over the limit", answerArgs("body", 200, signedBody(hostKey, request, 200, body)), string(request), body + strings.Repeat(" ", maxAnswer), false},
		{"arguments over the limit", append(answerArgs("body", 200, ""), bytes.Repeat([]byte(" "), maxArgsBytes)...), string(request), body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r failed[AnswerResult]
			if err := json.Unmarshal(CheckAnswer(tc.args, []byte(tc.request), []byte(tc.answer)), &r); err != nil {
				t.Fatal(err)
			}
			if r.Value.OK != tc.ok || (r.Error == "") != tc.ok {
				t.Fatalf("ok %v, error %q; want ok %v", r.Value.OK, r.Error, tc.ok)
			}
			if tc.name == "stream" && strings.Join(r.Value.Events, "|") != strings.Join(events, "|") {
				t.Fatalf("events %q, want %q", r.Value.Events, events)
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
		var r failed[AnswerResult]
		if err := json.Unmarshal(CheckAnswer(answerArgs(kind, 200, sig), request, answer), &r); err != nil {
			t.Fatal(err)
		}
		if r.Value.OK && !(isStream && string(answer) == stream) && !(!isStream && string(answer) == `{"a":1}`) {
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
	curve := settle.LoadCurve{MinMilli: 1000, MaxMilli: 2000}
	list := &settle.PriceList{Prices: settle.SamePrices(prices), Windows: settle.SameWindow(settle.DefaultContextWindow), LoadMilli: curve.Coefficient(0), Curve: curve, Wallet: "0:" + strings.Repeat("01", 32)}
	list.Sign(hostKey)
	otherList := *list
	otherList.Prices = settle.SamePrices(settle.PriceTable{PromptPerMillion: 1})
	otherList.Sign(hostKey)
	otherModel := *list
	otherModel.Prices = settle.Prices{Models: []settle.ModelPrice{{Model: "another", Prices: prices}}}
	otherModel.Sign(hostKey)
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
		{"a model the price list does not price", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID, PriceList: &otherModel}, false},
		{"price list of another key", ReceiptArgs{Receipt: good, SettlementKey: otherKey.Public().(ed25519.PublicKey), PipelineID: pipelineID, PriceList: list}, false},
		{"reserved within its max_price", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID, PriceList: list, MaxPrice: good.MaxCost}, true},
		// A host that ignored the cap: the list it shows explains the receipt, the cap does not.
		{"reserved over its max_price", ReceiptArgs{Receipt: good, SettlementKey: key, PipelineID: pipelineID, PriceList: list, MaxPrice: good.MaxCost - 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(tc.args)
			var r failed[AnswerResult]
			if err := json.Unmarshal(CheckReceipt(b), &r); err != nil {
				t.Fatal(err)
			}
			if r.Value.OK != tc.ok {
				t.Fatalf("ok %v, error %q; want ok %v", r.Value.OK, r.Error, tc.ok)
			}
		})
	}
}

// TestMaxPrice: the browser's default max_price is settle's (the one `cocoon chat`
// sends) for a list the attested settlement key signed, and there is none for a list
// of another key, or without a settlement key: a client agrees only to prices the
// attested host signed.
func TestMaxPrice(t *testing.T) {
	prices := settle.PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 2e6}
	curve := settle.LoadCurve{MinMilli: 1000, MaxMilli: 2000}
	list := &settle.PriceList{Prices: settle.SamePrices(prices), Windows: settle.Windows{Models: []settle.ModelWindow{{Model: "m", Tokens: 4096}}, Default: 2048},
		LoadMilli: curve.Coefficient(0), Curve: curve, Wallet: "0:" + strings.Repeat("01", 32)}
	list.Sign(hostKey)
	body := []byte(`{"messages":[],"max_tokens":100}`)
	want, err := list.RequestMaxPrice(body, true)
	if err != nil {
		t.Fatal(err)
	}
	if at4096, _ := list.MaxPrice("m", settle.AdmissionUsage(4096, 100, settle.ComputeBound)); want != at4096 {
		t.Fatalf("the dearest model's max_price %d, want m's at its signed window 4096: %d", want, at4096)
	}
	widened := *list
	widened.Windows = settle.Windows{Models: []settle.ModelWindow{{Model: "m", Tokens: 1e9}}, Default: 2048}
	key := hostKey.Public().(ed25519.PublicKey)
	for _, tc := range []struct {
		name string
		args MaxPriceArgs
		ok   bool
	}{
		{"the attested key's list", MaxPriceArgs{SettlementKey: key, PriceList: list, Pipeline: true}, true},
		{"another key's list", MaxPriceArgs{SettlementKey: otherKey.Public().(ed25519.PublicKey), PriceList: list, Pipeline: true}, false},
		{"a window widened after signing", MaxPriceArgs{SettlementKey: key, PriceList: &widened, Pipeline: true}, false},
		{"no settlement key", MaxPriceArgs{PriceList: list, Pipeline: true}, false},
		{"no list", MaxPriceArgs{SettlementKey: key, Pipeline: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, _ := json.Marshal(tc.args)
			var r failed[MaxPriceResult]
			if err := json.Unmarshal(MaxPrice(args, body), &r); err != nil {
				t.Fatal(err)
			}
			if (r.Error == "") != tc.ok || tc.ok && r.Value.MaxPrice != want {
				t.Fatalf("max_price %d, error %q; want ok %v, %d", r.Value.MaxPrice, r.Error, tc.ok, want)
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
			var s failed[SignedHeaders]
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
				for k, v := range s.Value.Headers {
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
				if verifies && settle.RequestHash(req.SigningString()) != s.Value.RequestHash {
					t.Fatalf("request hash %s is not the signed request's", s.Value.RequestHash)
				}
			}
		})
	}
}

// FuzzCheckReceipt: a receipt as the host (or anything between) sends it never panics
// the verifier, and passes only as the settlement key signed it.
func FuzzCheckReceipt(f *testing.F) {
	prices := settle.PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 2e6}
	good, _ := json.Marshal(testReceipt(hostKey, prices))
	f.Add(good)
	f.Add([]byte(`{"seq":1}`))
	key, _ := json.Marshal(hostKey.Public().(ed25519.PublicKey))
	f.Fuzz(func(t *testing.T, receipt []byte) {
		args := []byte(`{"receipt":` + string(receipt) + `,"settlement_key":` + string(key) + `,"pipeline_id":"` + pipelineID + `"}`)
		var r failed[AnswerResult]
		if err := json.Unmarshal(CheckReceipt(args), &r); err != nil {
			t.Fatal(err)
		}
		if r.Value.OK {
			var got settle.Receipt
			if err := json.Unmarshal(receipt, &got); err != nil || got.Verify(hostKey.Public().(ed25519.PublicKey)) != nil {
				t.Fatalf("a receipt the key did not sign passed: %s", receipt)
			}
		}
	})
}

// BenchmarkCheckAnswer is the verifier's work on every streamed answer the library
// reads: a stream of 64 chunks, its sha256 and one ed25519 verification.
func BenchmarkCheckAnswer(b *testing.B) {
	request := []byte(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	events := make([]string, 64)
	for i := range events {
		events[i] = `{"object":"chat.completion.chunk","choices":[{"delta":{"content":" token"}}]}`
	}
	stream := []byte(signedStream(hostKey, request, events...))
	args := answerArgs("stream", 0, "")
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		if out := CheckAnswer(args, request, stream); !bytes.HasPrefix(out, []byte(`{"ok":true`)) {
			b.Fatalf("%s", out)
		}
	}
}

// BenchmarkStreamOrder is the receipt rule's share of BenchmarkCheckAnswer: the JSON
// decoding of the same 64 events and settle.StreamReceipt over them.
func BenchmarkStreamOrder(b *testing.B) {
	events := make([]string, 64)
	for i := range events {
		events[i] = `{"object":"chat.completion.chunk","choices":[{"delta":{"content":" token"}}]}`
	}
	for b.Loop() {
		if err := streamOrder(events); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckAnswerStreamReceipt: a stream the host key signed whole, whose receipt event
// is out of place (a second receipt, more of the answer after it, an event after the
// error that ends the stream), is refused as a bad answer, not taken with its last
// receipt (before: the signature passed and the library kept whichever receipt came
// last). The orders a host sends pass.
func TestCheckAnswerStreamReceipt(t *testing.T) {
	request := []byte(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	chunk := `{"choices":[{"delta":{"content":"hel"}}]}`
	receipt := func(seq int) string {
		return fmt.Sprintf(`{"choices":[],"cocoon_receipt":{"seq":%d,"cost":"1","cumulative":"1"}}`, seq)
	}
	failure := `{"error":{"message":"shutting down","code":"shutting_down"}}`
	for _, tc := range []struct {
		name   string
		events []string
		ok     bool
	}{
		{"a receipt after the answer", []string{chunk, receipt(1)}, true},
		{"a receipt, then the error that ends a cut stream", []string{chunk, receipt(1), failure}, true},
		{"no receipt", []string{chunk, failure}, true},
		{"a second receipt", []string{chunk, receipt(1), receipt(2)}, false},
		{"a second receipt after the error", []string{chunk, receipt(1), failure, receipt(2)}, false},
		{"text after the receipt", []string{receipt(1), chunk}, false},
		{"text after the error", []string{chunk, failure, chunk}, false},
		{"an event that is not JSON", []string{chunk, "hello"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := signedStream(hostKey, request, tc.events...)
			if strings.HasPrefix(tc.events[len(tc.events)-1], `{"error":`) { // a failed stream ends without [DONE]
				stream = strings.TrimSuffix(stream, "data: [DONE]\n\n")
			}
			result := CheckAnswer(answerArgs("stream", 0, ""), request, []byte(stream))
			var r failed[AnswerResult]
			var code struct{ Code string }
			if err := errors.Join(json.Unmarshal(result, &r), json.Unmarshal(result, &code)); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.ok && (!r.Value.OK || r.Error != ""):
				t.Fatalf("refused: %s", r.Error)
			case !tc.ok && (r.Value.OK || code.Code != "bad_answer" || !strings.Contains(r.Error, "not an answer a host sends")):
				t.Fatalf("ok %v, code %q, error %q: want a bad_answer refusal", r.Value.OK, code.Code, r.Error)
			}
		})
	}
}
