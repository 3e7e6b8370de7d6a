package verifier

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
)

// TestIdempotentReceiptIsChecked: a request the browser library signs with an
// idempotency key (Host.chat's idempotencyKey with pay) gets the request hash its
// receipt must name, the one the host's ledger records for it
// (settle.IdempotentRequestHash), so that a receipt of another request of the same
// escrow and pipeline is refused as this one's. Before, SignRequest returned no hash
// for such a request, and CheckReceipt took any request's receipt.
func TestIdempotentReceiptIsChecked(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	account := "0:" + strings.Repeat("ab", 32)
	path := "/p/" + pipelineID + "/v1/chat/completions"
	body := []byte(`{"messages":[{"role":"user","content":"hi"}]}`)
	args, _ := json.Marshal(SignArgs{Account: account, ClientKey: client.Seed(), Method: "POST", Path: path, IdempotencyKey: "retry-1"})
	var s failed[SignedHeaders]
	if err := json.Unmarshal(SignRequest(args, body), &s); err != nil || s.Error != "" {
		t.Fatalf("%v %s", err, s.Error)
	}
	if want := settle.IdempotentRequestHash(account, "retry-1", "POST", path, body); s.Value.RequestHash != want {
		t.Fatalf("request hash %q, want the ledger's %q", s.Value.RequestHash, want)
	}
	prices := settle.PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 2e6}
	receipt := func(requestHash string) settle.Receipt {
		r := testReceipt(hostKey, prices)
		r.RequestHash = requestHash
		r.Sign(hostKey)
		return r
	}
	for _, tc := range []struct {
		name    string
		receipt settle.Receipt
		ok      bool
	}{
		{"this request's", receipt(s.Value.RequestHash), true},
		{"another request's, same escrow and pipeline", receipt(settle.IdempotentRequestHash(account, "retry-2", "POST", path, body)), false},
		{"the same body without the key", receipt(strings.Repeat("cd", 32)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(ReceiptArgs{Receipt: tc.receipt, SettlementKey: hostKey.Public().(ed25519.PublicKey), PipelineID: pipelineID,
				Account: account, RequestHash: s.Value.RequestHash})
			var r failed[AnswerResult]
			if err := json.Unmarshal(CheckReceipt(b), &r); err != nil {
				t.Fatal(err)
			}
			if r.Value.OK != tc.ok {
				t.Fatalf("ok %v (%s), want %v", r.Value.OK, r.Error, tc.ok)
			}
		})
	}
}
