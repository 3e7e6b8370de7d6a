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

// TestClockCorrectedBackServesHonestTraffic: an honest host whose clock ran a few
// minutes fast prunes its ledger hourly (a day back, as cocoon-host does), then NTP
// sets its clock back. The pruning mark is the time of the latest record forgotten,
// not the cutoff, so nothing signed since the requests it forgot is refused: requests
// signed by clients on the right time, before and after the correction, are served.
func TestClockCorrectedBackServesHonestTraffic(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	start := e.chain.Now()
	const fast = 4 * time.Minute // within settle.RequestWindow, as a signed request must be
	hostNow := start.Add(fast)
	svc := e.serviceWithClock(e.ledger, func() time.Time { return hostNow })
	serve := func(i int, signedAt time.Time) {
		t.Helper()
		a := e.admission(acct, body(i), 10, 10)
		a.Signed.Timestamp = signedAt.Unix()
		tk, err := e.admit(svc, e.sign(a, e.clientKey))
		if err != nil {
			t.Fatalf("request %d signed at %s, host clock %s: %v", i, signedAt.Sub(start), hostNow.Sub(start), err)
		}
		if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A day and a half of traffic, one request an hour, each followed by the hourly prune
	// of the host's fast clock.
	for h := range 36 {
		real := start.Add(time.Duration(h) * time.Hour)
		hostNow = real.Add(fast)
		serve(h, real)
		if err := e.ledger.Prune(ctx, hostNow.Add(-24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// NTP sets the clock back to the right time: requests signed just before and after
	// are served.
	real := start.Add(36 * time.Hour)
	hostNow = real
	serve(100, real.Add(-fast))
	serve(101, real)
	if got := e.totals(acct).LastSeq; got != 38 {
		t.Fatalf("%d receipts, want 38", got)
	}
}
