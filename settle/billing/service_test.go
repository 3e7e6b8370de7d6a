package billing_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// TestAdmission runs every admission rule against escrows really deployed on the chain.
func TestAdmission(t *testing.T) {
	e := newEnv(t)
	good := e.deploy(e.params(1), "2")
	p := e.params(2)
	p.HostKey = pub(key(9))
	otherKey := e.deploy(p, "1")
	p = e.params(3)
	p.HostAddr = e.other.WalletAddress()
	otherWallet := e.deploy(p, "1")
	never := e.addr(e.params(4)).StringRaw()
	forged := e.forged(e.params(5))
	closing := e.deploy(e.params(6), "1")
	e.requestWithdrawal(closing)
	small := e.deploy(e.params(7), "0.5")
	p = e.params(8)
	p.Timeout = uint32(billing.DefaultMinTimeout/time.Second) - 1
	hasty := e.deploy(p, "1")
	aWallet := e.client.WalletAddress().StringRaw() // active since it sent the deposits: a wallet's code

	now := e.chain.Now().Unix()
	window := int64(settle.RequestWindow / time.Second)
	signedAt := func(ts int64) request {
		a := e.admission(good, body(0), 10, 10)
		a.Signed.Timestamp = ts
		return e.sign(a, e.clientKey)
	}
	tampered := e.admission(good, body(0), 10, 10)
	tampered.Signed.Body = body(1)

	for _, tt := range []struct {
		name   string
		a      request
		code   string // "" if admitted
		status int
		want   []string // in the message
	}{
		{name: "signed", a: e.admission(good, body(0), 1000, 500)},
		{name: "signed a window ago", a: signedAt(now - window)},
		{name: "signed a window ahead", a: signedAt(now + window)},
		{name: "by API key", a: request{Admission: billing.Admission{Account: good, Body: body(0), MaxPromptTokens: 10, Model: "m"}}},
		{"expired", signedAt(now - window - 1), settle.CodeExpired, 401, []string{fmt.Sprint(now - window - 1), "more than 5m0s"}},
		{"from the future", signedAt(now + window + 1), settle.CodeExpired, 401, nil},
		{"signed by another key", e.sign(e.admission(good, body(0), 10, 10), key(9)), settle.CodeBadSignature, 401, []string{"client key"}},
		{"body changed after signing", tampered, settle.CodeBadSignature, 401, nil},
		{"escrow for another settlement key", e.admission(otherKey, body(0), 10, 10), settle.CodeUnknownAccount, 402, []string{"another host"}},
		{"escrow paying another wallet", e.admission(otherWallet, body(0), 10, 10), settle.CodeUnknownAccount, 402, []string{"another host"}},
		{"no escrow", e.admission(never, body(0), 10, 10), settle.CodeUnknownAccount, 402, []string{"no escrow at " + never}},
		{"escrow code with forged data", e.admission(forged, body(0), 10, 10), settle.CodeUnknownAccount, 402, []string{"not a Cocoon escrow"}},
		{"a wallet", e.admission(aWallet, body(0), 10, 10), settle.CodeUnknownAccount, 402, []string{"not a Cocoon escrow"}},
		{"closing", e.admission(closing, body(0), 10, 10), settle.CodeClosing, 402, []string{"closing"}},
		{"withdrawal timeout too short", e.admission(hasty, body(0), 10, 10), settle.CodeUnknownAccount, 402, []string{"timeout of 3599s", "at least 3600s"}},
		// 0.49 TON deposited; 490000 prompt tokens, 5 completion tokens and the compute
		// reserve come to 0.490011 TON: 0.000011 TON missing.
		{"insufficient", e.admission(small, body(0), 490_000, 5), settle.CodeInsufficient, 402,
			[]string{"has 0.49 TON unspent and unreserved", "may cost up to 0.490011 TON", "deposit at least 0.000011 TON more"}},
		{name: "exactly the deposit", a: e.admission(small, body(1), 490_000-11, 5)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := e.admit(e.svc, tt.a)
			if tt.code != "" {
				if se := code(t, err, tt.code, tt.want...); se.Status() != tt.status {
					t.Fatalf("status %d, want %d", se.Status(), tt.status)
				}
				if tk != nil {
					t.Fatal("a refused request has a ticket")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := maxCost(tt.a.MaxPromptTokens, tt.a.MaxCompletionTokens)
			if tk.MaxCost() != want || tk.Quote() != (settle.Quote{Prices: prices, LoadMilli: 1000}) {
				t.Fatalf("ticket for %d at %+v, want %d at idle", tk.MaxCost(), tk.Quote(), want)
			}
			if held := e.totals(tt.a.Account).Held; held != want {
				t.Fatalf("%d held, want %d", held, want)
			}
			if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 1}, settle.StatusCompleted, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Nothing refused left a trace in the ledger.
	for _, a := range []string{otherKey, otherWallet, never, forged, closing, hasty, aWallet} {
		if tot := e.totals(a); tot.LastSeq != 0 || tot.Held != 0 {
			t.Errorf("refused account %s has totals %+v", a, tot)
		}
	}
}

// TestAdmitTimestampOverflow: a timestamp so far off that its distance in nanoseconds
// overflows must still be refused.
func TestAdmitTimestampOverflow(t *testing.T) {
	e := newEnv(t)
	good := e.deploy(e.params(1), "2")
	// 2⁵⁵ s · 10⁹ ns/s is a multiple of 2⁶⁴: it wraps to a distance of 0.
	a := e.admission(good, body(0), 10, 10)
	a.Signed.Timestamp -= 1 << 55
	_, err := e.admit(e.svc, e.sign(a, e.clientKey))
	code(t, err, settle.CodeExpired)
	_, err = e.svc.Authenticate(ctx, *a.Signed, e.sign(a, e.clientKey).Signature)
	code(t, err, settle.CodeExpired)
}

func TestAdmitReplay(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	a := e.admission(acct, body(0), 10, 10)
	tk, err := e.admit(e.svc, a)
	if err != nil {
		t.Fatal(err)
	}
	// While the first is running, and after its receipt is durable.
	_, err = e.admit(e.svc, a)
	code(t, err, settle.CodeReplay, "new nonce")
	if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.admit(e.svc, a)
	code(t, err, settle.CodeReplay)
	// The same request signed again with a new nonce is a new request.
	e.spend(e.svc, acct, 0, 10, 10)
	if tot := e.totals(acct); tot.LastSeq != 2 {
		t.Fatalf("%d receipts, want 2", tot.LastSeq)
	}
}

// TestReplayWithIdempotencyKey: a captured signed request sent again under new
// idempotency keys is refused: the key is signed.
func TestReplayWithIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	a := e.admission(acct, body(0), 10, 10)
	tk, err := e.admit(e.svc, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		replay := a // the same headers and body, signature and all
		replay.IdempotencyKey = fmt.Sprint("attacker-", i)
		if tk, err := e.admit(e.svc, replay); err == nil {
			tk.Finish(ctx, settle.Usage{PromptTokens: 5}, settle.StatusCompleted, nil)
			t.Fatalf("replay %d with a new idempotency key admitted; the escrow now has %d receipts", i, e.totals(acct).LastSeq)
		}
	}
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	other := e.deploy(e.params(2), "2")
	// with is a request with an idempotency key, signed afresh each time (a retry).
	with := func(account, key string, b []byte) request {
		a := e.admission(account, b, 100, 100)
		signed := *a.Signed
		signed.IdempotencyKey = key
		a.Signed, a.IdempotencyKey = &signed, key
		return e.sign(a, e.clientKey)
	}

	first, err := e.admit(e.svc, with(acct, "k1", body(1)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.admit(e.svc, with(acct, "k1", body(1)))
	if se := code(t, err, settle.CodeInProgress, `"k1"`); se.Status() != 409 {
		t.Fatalf("in progress: status %d", se.Status())
	}
	_, err = e.admit(e.svc, with(acct, "k1", body(2)))
	if se := code(t, err, settle.CodeIdempotencyMismatch, `"k1"`); se.Status() != 422 {
		t.Fatalf("mismatch: status %d", se.Status())
	}
	receipt, err := first.Finish(ctx, settle.Usage{PromptTokens: 40, CompletionTokens: 2}, settle.StatusCompleted, []byte("response 1"))
	if err != nil {
		t.Fatal(err)
	}

	// Completed: the retry gets the first receipt and response, signed or by API key,
	// and is not charged again.
	for name, a := range map[string]request{
		"signed":     with(acct, "k1", body(1)),
		"by API key": {Admission: billing.Admission{Account: acct, Method: "POST", Path: "/v1/chat/completions", Body: body(1), IdempotencyKey: "k1", MaxPromptTokens: 100, Model: "m"}},
	} {
		_, err := e.admit(e.svc, a)
		var done *billing.IdempotentError
		if !errors.As(err, &done) || done.Err != nil {
			t.Fatalf("%s retry: %v, want a completed *billing.IdempotentError", name, err)
		}
		if string(done.Response) != "response 1" || done.Receipt == nil || done.Receipt.Seq != 1 ||
			!bytes.Equal(done.Receipt.Signature, receipt.Signature) {
			t.Fatalf("%s retry: response %q, receipt %+v; want the first's", name, done.Response, done.Receipt)
		}
		if err := done.Receipt.Verify(e.svc.PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.admit(e.svc, with(acct, "k1", body(2)))
	code(t, err, settle.CodeIdempotencyMismatch)
	if tot := e.totals(acct); tot.LastSeq != 1 || tot.Held != 0 || tot.Cumulative != receipt.Cost {
		t.Fatalf("totals after retries %+v, want the one receipt", tot)
	}
	// Keys are per account.
	e.spendWith(with(other, "k1", body(1)))
}

// TestRetryAfterCancel: a request whose client went away is charged what it got and
// may be retried under its idempotency key, signed afresh; the cancelled attempt itself
// cannot be sent again, by its client or by whoever captured it.
func TestRetryAfterCancel(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	with := func(key string) request {
		a := e.admission(acct, body(1), 100, 100)
		a.Signed.IdempotencyKey, a.IdempotencyKey = key, key
		return e.sign(a, e.clientKey)
	}
	first := with("k")
	tk, err := e.admit(e.svc, first)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := tk.Finish(ctx, settle.Usage{PromptTokens: 10, CompletionTokens: 3}, settle.StatusCancelled, []byte("cut"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.admit(e.svc, first)
	code(t, err, settle.CodeReplay)
	retry, err := e.admit(e.svc, with("k"))
	if err != nil {
		t.Fatalf("retry after a cancelled attempt: %v", err)
	}
	done, err := retry.Finish(ctx, settle.Usage{PromptTokens: 10, CompletionTokens: 30}, settle.StatusCompleted, []byte("whole"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.admit(e.svc, with("k"))
	var idem *billing.IdempotentError
	if !errors.As(err, &idem) || string(idem.Response) != "whole" || idem.Receipt.Seq != done.Seq {
		t.Fatalf("a retry after completion: %v, want the completed answer", err)
	}
	if rs, cum := e.chainOf(acct); len(rs) != 2 || cum != cut.Cost+done.Cost || rs[0].RequestHash != rs[1].RequestHash {
		t.Fatalf("%d receipts adding up to %d, want the cut and the whole attempt", len(rs), cum)
	}
}

// TestTicketRelease: a ticket given up without a receipt (a request that panicked)
// frees its hold and its request, and charges nothing; releasing it again, or after a
// Finish, does nothing.
func TestTicketRelease(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	a := e.admission(acct, body(0), 100, 100)
	tk, err := e.admit(e.svc, a)
	if err != nil {
		t.Fatal(err)
	}
	tk.Release()
	tk.Release()
	if tot := e.totals(acct); tot.Held != 0 || tot.LastSeq != 0 {
		t.Fatalf("after Release: %+v", tot)
	}
	if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 1}, settle.StatusCompleted, nil); err == nil {
		t.Fatal("a released ticket was finished")
	}
	tk, err = e.admit(e.svc, a)
	if err != nil {
		t.Fatalf("the released request again: %v", err)
	}
	if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 1}, settle.StatusCompleted, nil); err != nil {
		t.Fatal(err)
	}
	tk.Release()
	if tot := e.totals(acct); tot.Held != 0 || tot.LastSeq != 1 {
		t.Fatalf("Release after Finish: %+v", tot)
	}
}

// spendWith admits a and finishes it with a little usage.
func (e *env) spendWith(a request) *settle.Receipt {
	e.t.Helper()
	tk, err := e.admit(e.svc, a)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := tk.Finish(ctx, settle.Usage{PromptTokens: 1}, settle.StatusCompleted, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// TestFinish checks the receipts Finish makes: the cost at the admitted quote, capped at
// the reservation, every status, and a chain that verifies and adds up to the ledger's
// totals.
func TestFinish(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")

	atIdle, err := e.admit(e.svc, e.admission(acct, body(1), 100, 50))
	if err != nil {
		t.Fatal(err)
	}
	e.pricer.Observe(1, 1) // the host is full: the price triples
	atFull, err := e.admit(e.svc, e.admission(acct, body(2), 100, 50))
	if err != nil {
		t.Fatal(err)
	}
	if atFull.Quote().LoadMilli != 3000 || atFull.MaxCost() != 3*atIdle.MaxCost() {
		t.Fatalf("admitted at load %d for %d, want 3000 for %d", atFull.Quote().LoadMilli, atFull.MaxCost(), 3*atIdle.MaxCost())
	}
	failed, err := e.admit(e.svc, e.admission(acct, body(3), 100, 50))
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := e.admit(e.svc, e.admission(acct, body(4), 100, 50))
	if err != nil {
		t.Fatal(err)
	}
	open := atIdle.MaxCost() + 3*3*atIdle.MaxCost()
	if st, err := e.svc.Account(ctx, acct); err != nil || st.Held != open || st.Deposited != deposited("2") || st.Closing {
		t.Fatalf("account with four requests running: %+v, %v; want %d held of %d", st, err, open, deposited("2"))
	}

	for i, f := range []struct {
		ticket *billing.Ticket
		usage  settle.Usage
		status string
		cost   uint64
	}{
		// Admitted at idle, finished at full load: charged at idle.
		{atIdle, settle.Usage{PromptTokens: 40, CompletionTokens: 10, ComputeUnits: 500}, settle.StatusCompleted, 40*1000 + 10*2000 + 500},
		// More than was reserved: capped.
		{atFull, settle.Usage{PromptTokens: 100, CompletionTokens: 51, ComputeUnits: 1000}, settle.StatusCompleted, atFull.MaxCost()},
		{failed, settle.Usage{PromptTokens: 100}, settle.StatusFailed, 3 * 100 * 1000},
		{cancelled, settle.Usage{PromptTokens: 100, CompletionTokens: 7}, settle.StatusCancelled, 3 * (100*1000 + 7*2000)},
	} {
		r, err := f.ticket.Finish(ctx, f.usage, f.status, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) || r.Cost != f.cost || r.Status != f.status || r.Usage != f.usage || r.Account != acct || r.Model != "m" {
			t.Fatalf("receipt %d: %+v; want cost %d, status %s", i+1, r, f.cost, f.status)
		}
		if err := r.Verify(e.svc.PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	rs, cum := e.chainOf(acct)
	st, err := e.svc.Account(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, r := range rs {
		sum += r.Cost
	}
	if len(rs) != 4 || cum != sum || st.Cumulative != cum || st.LastSeq != 4 || st.Held != 0 {
		t.Fatalf("%d receipts adding up to %d (costs %d); account %+v", len(rs), cum, sum, st)
	}
	// A part of the chain verifies from where it starts, and a gap does not.
	tail, err := e.svc.Receipts(ctx, acct, 3, 10)
	if err != nil || len(tail) != 2 || tail[0].Seq != 3 {
		t.Fatalf("receipts from 3: %d, %v", len(tail), err)
	}
	if c, err := settle.VerifyChain(tail, e.svc.PublicKey()); err != nil || c != cum {
		t.Fatalf("tail verifies to %d, %v; want %d", c, err, cum)
	}
	if _, err := settle.VerifyChain([]settle.Receipt{rs[0], rs[2]}, e.svc.PublicKey()); !errors.Is(err, settle.ErrReceipt) {
		t.Fatalf("a chain with a gap: %v", err)
	}
	// Finish is once: a second one fails and bills nothing.
	if _, err := atIdle.Finish(ctx, settle.Usage{PromptTokens: 1}, settle.StatusCompleted, nil); err == nil {
		t.Fatal("a second Finish succeeds")
	}
	if tot := e.totals(acct); tot.LastSeq != 4 {
		t.Fatalf("%d receipts after a second Finish", tot.LastSeq)
	}
}

// TestConcurrentAdmissionsNeverOverspend: many clients at once against a deposit of ten
// requests: holds count, so exactly ten are admitted and the receipts add up to exactly
// the deposit.
func TestConcurrentAdmissionsNeverOverspend(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "0.02") // 0.01 TON = 10 requests of 999 prompt tokens and the compute reserve
	const perRequest = 1_000_000
	if maxCost(999, 0) != perRequest || deposited("0.02") != 10*perRequest {
		t.Fatal("the amounts do not make ten requests")
	}
	var admitted, refused atomic.Int64 // by the 16 clients
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 16 {
		wg.Go(func() {
			for i := range 8 {
				tk, err := e.admit(e.svc, e.admission(acct, body(g*8+i), 999, 0))
				var se *billing.Error
				switch {
				case errors.As(err, &se) && se.Code == settle.CodeInsufficient:
					refused.Add(1)
					continue
				case err != nil:
					errs <- err
					return
				}
				admitted.Add(1)
				// Used more than reserved: charged the whole reservation.
				if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5000}, settle.StatusCompleted, nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if admitted.Load()+refused.Load() != 16*8 || admitted.Load() == 0 {
		t.Fatalf("%d admitted and %d refused of %d", admitted.Load(), refused.Load(), 16*8)
	}
	// Fill what concurrency left, one at a time, until one is refused.
	total := admitted.Load()
	for i := 0; ; i++ {
		tk, err := e.admit(e.svc, e.admission(acct, body(1000+i), 999, 0))
		if err != nil {
			code(t, err, settle.CodeInsufficient, "has 0.0 TON unspent and unreserved")
			break
		}
		total++
		if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 5000}, settle.StatusCompleted, nil); err != nil {
			t.Fatal(err)
		}
	}
	rs, cum := e.chainOf(acct)
	if total != 10 || len(rs) != 10 || cum != deposited("0.02") {
		t.Fatalf("%d admitted (%d concurrently), %d receipts adding up to %d; want 10 adding up to the deposit %d",
			total, admitted.Load(), len(rs), cum, deposited("0.02"))
	}
	if tot := e.totals(acct); tot.Held != 0 || tot.Cumulative != cum {
		t.Fatalf("totals %+v", tot)
	}
}

// failingCommits is the real ledger with a Commit that fails on demand, as a full disk
// would make it.
type failingCommits struct {
	*ledger.Ledger
	fail atomic.Bool
}

var errDiskFull = errors.New("disk full")

func (f *failingCommits) Commit(c context.Context, id billing.HoldID, r *settle.Receipt, response []byte, sign func(*settle.Receipt)) error {
	if f.fail.Load() {
		return errDiskFull
	}
	return f.Ledger.Commit(c, id, r, response, sign)
}

// TestFinishReleasesAfterFailedCommit: a receipt that could not be committed bills
// nothing, and its reservation and request are free again.
func TestFinishReleasesAfterFailedCommit(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	store := &failingCommits{Ledger: e.ledger}
	svc := e.service(store)
	a := e.admission(acct, body(0), 100, 100)
	tk, err := e.admit(svc, a)
	if err != nil {
		t.Fatal(err)
	}
	if held := e.totals(acct).Held; held != tk.MaxCost() {
		t.Fatalf("%d held, want %d", held, tk.MaxCost())
	}
	store.fail.Store(true)
	if r, err := tk.Finish(ctx, settle.Usage{PromptTokens: 10}, settle.StatusCompleted, nil); !errors.Is(err, errDiskFull) || r != nil {
		t.Fatalf("Finish = %v, %v; want the commit's error", r, err)
	}
	if tot := e.totals(acct); tot.Held != 0 || tot.LastSeq != 0 {
		t.Fatalf("totals after a failed commit %+v, want nothing held or billed", tot)
	}
	// The request was never billed, so the client may send it again.
	store.fail.Store(false)
	if tk, err = e.admit(svc, a); err != nil {
		t.Fatalf("the same request after a failed commit: %v", err)
	}
	if r, err := tk.Finish(ctx, settle.Usage{PromptTokens: 10}, settle.StatusCompleted, nil); err != nil || r.Seq != 1 {
		t.Fatalf("Finish = %+v, %v", r, err)
	}

	// A closed ledger: the error, and after a restart no trace of the request.
	tk, err = e.admit(e.svc, e.admission(acct, body(1), 100, 100))
	if err != nil {
		t.Fatal(err)
	}
	e.ledger.Close()
	if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 10}, settle.StatusCompleted, nil); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Finish on a closed ledger: %v", err)
	}
	_, err = e.admit(e.svc, e.admission(acct, body(2), 100, 100))
	code(t, err, settle.CodeUnavailable)
	e.ledger = e.openLedger(e.ledgerPath)
	if tot := e.totals(acct); tot.LastSeq != 1 || tot.Held != 0 {
		t.Fatalf("totals after restart %+v, want the one receipt", tot)
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "2")
	a := e.admission(acct, nil, 0, 0)
	a.Signed.Method, a.Signed.Path = "GET", "/v1/accounts/"+acct
	a = e.sign(a, e.clientKey)
	authenticate := func(r settle.SignedRequest, sig []byte) error {
		_, err := e.svc.Authenticate(ctx, r, sig)
		return err
	}
	for range 2 { // reads may repeat
		if err := authenticate(*a.Signed, a.Signature); err != nil {
			t.Fatal(err)
		}
	}
	code(t, authenticate(*a.Signed, e.sign(a, key(9)).Signature), settle.CodeBadSignature)
	old := *a.Signed
	old.Timestamp -= int64(settle.RequestWindow/time.Second) + 1
	code(t, authenticate(old, e.sign(request{Signed: &old}, e.clientKey).Signature), settle.CodeExpired)
	never := *a.Signed
	never.Account = e.addr(e.params(2)).StringRaw()
	code(t, authenticate(never, e.sign(request{Signed: &never}, e.clientKey).Signature), settle.CodeUnknownAccount)
	// An escrow of the same client for another host is no credential here.
	p := e.params(3)
	p.HostKey = pub(key(9))
	elsewhere := *a.Signed
	elsewhere.Account = e.deploy(p, "1")
	code(t, authenticate(elsewhere, e.sign(request{Signed: &elsewhere}, e.clientKey).Signature), settle.CodeUnknownAccount, "another host")
	// Nothing was recorded: the same signed request is still admissible once.
	if _, err := e.admit(e.svc, a); err != nil {
		t.Fatal(err)
	}
}

// TestAdmitPricesTheModel: a request is held, capped and charged at the table of the
// model it runs, not another model's: a request for the dear model reserves ten times
// what one for "m" does, its receipt carries the dear table and costs ten times as
// much, a cap that covers "m"'s worst case but not the dear one's refuses the dear
// request, and a model the price list lacks is refused (400) with nothing held.
func TestAdmitPricesTheModel(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "5")
	usage := settle.Usage{PromptTokens: 100, CompletionTokens: 50, ComputeUnits: 10}
	run := func(model string, maxPrice uint64) (*settle.Receipt, uint64, error) {
		a := e.admission(acct, body(int(maxPrice)+len(model)), 1000, 500)
		a.Model, a.MaxPrice = model, maxPrice
		tk, err := e.admit(e.svc, a)
		if err != nil {
			return nil, 0, err
		}
		r, err := tk.Finish(ctx, usage, settle.StatusCompleted, nil)
		return r, tk.MaxCost(), err
	}
	cheap, cheapHold, err := run("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	dear, dearHold, err := run("dear", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		r     *settle.Receipt
		hold  uint64
		table settle.PriceTable
		model string
	}{{cheap, cheapHold, prices, "m"}, {dear, dearHold, dearPrices, "dear"}} {
		wantHold := c.table.Cost(settle.Usage{PromptTokens: 1000, CompletionTokens: 500, ComputeUnits: computeReserve}, 1000, math.MaxUint64)
		if c.r.Model != c.model || c.r.Prices != c.table || c.r.Cost != c.table.Cost(usage, 1000, c.hold) || c.hold != wantHold {
			t.Errorf("model %s: receipt %+v held %d; want the table %+v, held %d", c.model, c.r, c.hold, c.table, wantHold)
		}
	}
	if dear.Cost != 10*cheap.Cost {
		t.Errorf("the dear model cost %d, want ten times %d", dear.Cost, cheap.Cost)
	}
	if _, _, err := run("dear", cheapHold); err == nil {
		t.Fatal("a cap that covers the cheap model's worst case admitted the dear model")
	} else {
		code(t, err, settle.CodeMaxPrice, fmt.Sprintf("may cost up to %d nanoTON", dearHold))
	}
	if _, _, err := run("m", cheapHold); err != nil {
		t.Fatalf("the cheap model at its own worst case: %v", err)
	}
	before := e.totals(acct)
	_, _, err = run("unpriced", 0)
	if se := code(t, err, settle.CodeUnpricedModel, `no price for model "unpriced"`); se.Status() != 400 {
		t.Errorf("status %d, want 400", se.Status())
	}
	if after := e.totals(acct); after != before {
		t.Errorf("a refused model changed the account: %+v, was %+v", after, before)
	}
}

func TestPriceList(t *testing.T) {
	e := newEnv(t)
	l := e.svc.PriceList()
	if err := l.Verify(e.svc.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if m, _ := l.For("m"); l.Wallet != e.host.WalletAddress().StringRaw() || m != prices || l.LoadMilli != 1000 || l.Curve != curve ||
		l.MinTimeout != uint32(billing.DefaultMinTimeout/time.Second) {
		t.Fatalf("price list %+v", l)
	}
	if err := l.Verify(pub(key(9))); err == nil {
		t.Fatal("verifies with another key")
	}
	l.Wallet = e.other.WalletAddress().StringRaw()
	if err := l.Verify(nil); err == nil {
		t.Fatal("verifies with another wallet")
	}
}
