package billing_test

import (
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// TestReplayAfterTheClockJumps is a host operator's attack on a client: the operator
// controls the machine's clock, and the host forgets request hashes older than a day
// (cocoon-host prunes its ledger with time.Now). It captures a signed request, moves
// the host's clock a day ahead so that the next prune forgets the request's hash (and
// its idempotency record), moves the clock back to within the request's signed window,
// and sends the captured request again: the escrow must not be charged twice.
func TestReplayAfterTheClockJumps(t *testing.T) {
	for _, idempotencyKey := range []string{"", "order-7"} {
		t.Run("key="+idempotencyKey, func(t *testing.T) {
			e := newEnv(t)
			acct := e.deploy(e.params(1), "2")
			start := e.chain.Now()
			hostNow := start
			svc := e.serviceWithClock(e.ledger, func() time.Time { return hostNow })

			a := e.admission(acct, body(0), 10, 10)
			if idempotencyKey != "" {
				a.IdempotencyKey, a.Signed.IdempotencyKey = idempotencyKey, idempotencyKey
				a = e.sign(a, e.clientKey)
			}
			tk, err := e.admit(svc, a)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil); err != nil {
				t.Fatal(err)
			}

			// A day and a minute ahead, the host's prune (cocoon-host's, a day back)
			// forgets the request.
			hostNow = start.Add(24*time.Hour + time.Minute)
			if err := e.ledger.Prune(ctx, hostNow.Add(-24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			// Back to four minutes after the request was signed: inside its window,
			// and after the prune's cutoff.
			hostNow = start.Add(4 * time.Minute)
			tk, err = e.admit(svc, a)
			if err == nil {
				tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil)
				t.Fatalf("the captured request was admitted again after the clock went back; the escrow now has %d receipts", e.totals(acct).LastSeq)
			}
			code(t, err, settle.CodeExpired, "sign it again")

			// A request signed after the cutoff is served: the host refuses only what
			// it can no longer tell from a replay.
			hostNow = start.Add(5 * time.Minute)
			fresh := e.admission(acct, body(1), 10, 10)
			fresh.Signed.Timestamp = hostNow.Unix()
			if tk, err = e.admit(svc, e.sign(fresh, e.clientKey)); err != nil {
				t.Fatalf("a request signed after the cutoff: %v", err)
			}
			if r, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil); err != nil || r.Seq != 2 {
				t.Fatalf("the next request: %v, want seq 2", err)
			}
		})
	}
}
