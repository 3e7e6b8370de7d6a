package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

func TestChain(t *testing.T) {
	l, path := openLedger(t, "")
	a, b := account(1), account(2)
	var want [2]uint64
	for i := range 150 {
		for j, acct := range []string{a, b} {
			cost := uint64(i*7+j) % 50
			r := commit(t, l, billing.Reservation{Account: acct, RequestHash: hash(acct, i), MaxCost: 40, Limit: math.MaxUint64}, cost, nil)
			want[j] += min(cost, 40)
			if r.Seq != uint64(i+1) || r.Cumulative != want[j] {
				t.Fatalf("receipt %d of %s: seq %d, cumulative %d; want %d, %d", i, acct, r.Seq, r.Cumulative, i+1, want[j])
			}
		}
	}
	l = reopen(t, l, path)
	chains := verifyAll(t, l, []string{a, b})
	for j, acct := range []string{a, b} {
		if n := len(chains[acct]); n != 150 {
			t.Errorf("%s: %d receipts, want 150", acct, n)
		}
		if got := chains[acct][149].Cumulative; got != want[j] {
			t.Errorf("%s: cumulative %d, want %d", acct, got, want[j])
		}
	}

	for _, tc := range []struct {
		from      uint64
		limit     int
		wantFirst uint64
		wantN     int
	}{
		{from: 0, limit: 10, wantFirst: 1, wantN: 10},
		{from: 100, limit: 1000, wantFirst: 100, wantN: 51},
		{from: 150, limit: 1, wantFirst: 150, wantN: 1},
		{from: 151, limit: 10, wantN: 0},
		{from: 1, limit: 0, wantN: 0},
	} {
		rs, err := l.Receipts(ctx, a, tc.from, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != tc.wantN || (tc.wantN > 0 && rs[0].Seq != tc.wantFirst) {
			t.Errorf("Receipts(from %d, limit %d): %d receipts, want %d from seq %d", tc.from, tc.limit, len(rs), tc.wantN, tc.wantFirst)
		}
		for i, r := range rs {
			if r.Account != a || r.Seq != tc.wantFirst+uint64(i) {
				t.Errorf("Receipts(from %d): receipt %d is %s seq %d", tc.from, i, r.Account, r.Seq)
			}
		}
	}
	if rs, err := l.Receipts(ctx, account(3), 1, 10); err != nil || len(rs) != 0 {
		t.Errorf("unknown account: %d receipts, %v", len(rs), err)
	}
	if totals, err := l.Account(ctx, account(3)); err != nil || totals != (billing.AccountTotals{Account: account(3)}) {
		t.Errorf("unknown account: %+v, %v", totals, err)
	}
}

func TestReserveLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		commits []uint64 // costs committed first (MaxCost 100 each)
		holds   []uint64 // open holds
		limit   uint64
		maxCost uint64
		ok      bool
		// available is the InsufficientError's Available when not ok.
		available uint64
	}{
		{name: "empty account, exact fit", limit: 100, maxCost: 100, ok: true},
		{name: "empty account, one over", limit: 100, maxCost: 101, available: 100},
		{name: "zero limit", limit: 0, maxCost: 1, available: 0},
		{name: "cumulative counts", commits: []uint64{30, 20}, limit: 100, maxCost: 50, ok: true},
		{name: "cumulative counts, one over", commits: []uint64{30, 20}, limit: 100, maxCost: 51, available: 50},
		{name: "holds count", holds: []uint64{25, 25}, limit: 100, maxCost: 51, available: 50},
		{name: "both count", commits: []uint64{10}, holds: []uint64{20}, limit: 100, maxCost: 70, ok: true},
		{name: "both count, one over", commits: []uint64{10}, holds: []uint64{20}, limit: 100, maxCost: 71, available: 70},
		{name: "limit below cumulative", commits: []uint64{80}, limit: 50, maxCost: 1, available: 0},
		{name: "limit below holds", holds: []uint64{80}, limit: 50, maxCost: 1, available: 0},
		{name: "no overflow", commits: []uint64{1}, holds: []uint64{1}, limit: math.MaxUint64, maxCost: math.MaxUint64, available: math.MaxUint64 - 2},
		{name: "zero max cost at the limit", commits: []uint64{100}, limit: 100, maxCost: 0, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := openLedger(t, "")
			a := account(1)
			for i, c := range tc.commits {
				commit(t, l, billing.Reservation{Account: a, RequestHash: hash("c", i), MaxCost: 100, Limit: math.MaxUint64}, c, nil)
			}
			for i, h := range tc.holds {
				if _, err := l.Reserve(ctx, billing.Reservation{Account: a, RequestHash: hash("h", i), MaxCost: h, Limit: math.MaxUint64}); err != nil {
					t.Fatal(err)
				}
			}
			// Another account's holds never count.
			if _, err := l.Reserve(ctx, billing.Reservation{Account: account(2), RequestHash: hash("other"), MaxCost: 1000, Limit: 1000}); err != nil {
				t.Fatal(err)
			}
			_, err := l.Reserve(ctx, billing.Reservation{Account: a, RequestHash: hash("new"), MaxCost: tc.maxCost, Limit: tc.limit})
			var ie *billing.InsufficientError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Reserve: %v", err)
			case !tc.ok && !errors.As(err, &ie):
				t.Fatalf("Reserve: %v, want an InsufficientError", err)
			case ie != nil && (ie.Available != tc.available || ie.Needed != tc.maxCost || ie.Missing() != tc.maxCost-tc.available):
				t.Fatalf("InsufficientError{Available: %d, Needed: %d}, want {%d, %d}", ie.Available, ie.Needed, tc.available, tc.maxCost)
			}
		})
	}
}

// TestConcurrentHolds reserves from many goroutines at once: exactly as many holds as
// the limit allows succeed, whatever the interleaving.
func TestConcurrentHolds(t *testing.T) {
	l, _ := openLedger(t, "")
	a := account(1)
	commit(t, l, billing.Reservation{Account: a, RequestHash: hash("first"), MaxCost: 100, Limit: 1100}, 100, nil)

	const n, maxCost, limit = 200, 10, 1100
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = l.Reserve(ctx, billing.Reservation{Account: a, RequestHash: hash(i), MaxCost: maxCost, Limit: limit})
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var ie *billing.InsufficientError
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &ie) || ie.Available != 0 || ie.Needed != maxCost:
			t.Fatalf("Reserve: %v (%+v)", err, ie)
		}
	}
	if ok != 100 {
		t.Errorf("%d holds succeeded, want 100", ok)
	}
	totals, err := l.Account(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if totals.Held != 1000 || totals.Cumulative != 100 {
		t.Errorf("totals %+v, want Held 1000, Cumulative 100", totals)
	}
}

func TestReplay(t *testing.T) {
	l, path := openLedger(t, "")
	a := account(1)
	res := billing.Reservation{Account: a, RequestHash: hash("r"), MaxCost: 10, Limit: 1000}
	id, err := l.Reserve(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, res); err != billing.ErrReplay {
		t.Fatalf("replay in flight: %v, want ErrReplay", err)
	}
	// A request hash is per account.
	other := res
	other.Account = account(2)
	if _, err := l.Reserve(ctx, other); err != nil {
		t.Fatalf("same hash on another account: %v", err)
	}
	if err := l.Commit(ctx, id, bill(res, 5), nil, sign); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, res); err != billing.ErrReplay {
		t.Fatalf("replay after commit: %v, want ErrReplay", err)
	}
	l = reopen(t, l, path)
	if _, err := l.Reserve(ctx, res); err != billing.ErrReplay {
		t.Fatalf("replay after reopen: %v, want ErrReplay", err)
	}
	// account(2)'s hold died with the process: its hash is free again.
	if _, err := l.Reserve(ctx, other); err != nil {
		t.Fatalf("hash of a hold lost on reopen: %v", err)
	}
	// A released hold frees its hash too.
	res.RequestHash = hash("released")
	id, err = l.Reserve(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(id); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, res); err != nil {
		t.Fatalf("hash of a released hold: %v", err)
	}
}

func TestIdempotency(t *testing.T) {
	l, path := openLedger(t, "")
	a := account(1)
	res := billing.Reservation{Account: a, RequestHash: hash("r"), IdempotencyKey: "key-1", MaxCost: 10, Limit: 1000}
	id, err := l.Reserve(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	other := res
	other.RequestHash = hash("other")
	noKey := res
	noKey.IdempotencyKey = ""
	otherAccount := res
	otherAccount.Account = account(2)

	// check reserves res (same key and hash), other (same key, another hash) and
	// noKey (same hash, no key) and compares what they return.
	check := func(stage string, want *billing.IdempotentError) {
		t.Helper()
		_, err := l.Reserve(ctx, res)
		var ie *billing.IdempotentError
		if !errors.As(err, &ie) {
			t.Fatalf("%s: same key: %v, want an IdempotentError", stage, err)
		}
		if ie.Err != want.Err || !bytes.Equal(ie.Response, want.Response) || (ie.Receipt == nil) != (want.Receipt == nil) {
			t.Fatalf("%s: same key: %+v, want %+v", stage, ie, want)
		}
		if want.Receipt != nil {
			got, _ := json.Marshal(ie.Receipt)
			w, _ := json.Marshal(want.Receipt)
			if !bytes.Equal(got, w) {
				t.Fatalf("%s: stored receipt %s, want %s", stage, got, w)
			}
		}
		if _, err := l.Reserve(ctx, other); !errors.Is(err, billing.ErrIdempotencyMismatch) {
			t.Fatalf("%s: same key, other request: %v, want ErrIdempotencyMismatch", stage, err)
		}
		if _, err := l.Reserve(ctx, noKey); err != billing.ErrReplay {
			t.Fatalf("%s: same request without key: %v, want ErrReplay", stage, err)
		}
	}

	check("in progress", &billing.IdempotentError{Err: billing.ErrInProgress})
	if _, err := l.Reserve(ctx, res); !errors.Is(err, billing.ErrInProgress) {
		t.Fatalf("errors.Is(%v, ErrInProgress) is false", err)
	}
	response := []byte(`{"choices":[]}`)
	r := bill(res, 7)
	if err := l.Commit(ctx, id, r, response, sign); err != nil {
		t.Fatal(err)
	}
	check("completed", &billing.IdempotentError{Receipt: r, Response: response})
	l = reopen(t, l, path)
	check("completed, after reopen", &billing.IdempotentError{Receipt: r, Response: response})

	// Keys are per account.
	if _, err := l.Reserve(ctx, otherAccount); err != nil {
		t.Fatalf("same key on another account: %v", err)
	}
	// A completed request with an empty response returns an empty one.
	empty := billing.Reservation{Account: a, RequestHash: hash("empty"), IdempotencyKey: "key-2", MaxCost: 10, Limit: 1000}
	er := commit(t, l, empty, 1, nil)
	_, err = l.Reserve(ctx, empty)
	var ie *billing.IdempotentError
	if !errors.As(err, &ie) || ie.Err != nil || len(ie.Response) != 0 || ie.Receipt == nil || ie.Receipt.Seq != er.Seq {
		t.Fatalf("empty response: %v", err)
	}
}

// TestCancelledKeyRunsAgain: a request whose client went away (a cut stream) leaves
// its idempotency key free, so the retry runs the request again instead of replaying
// the cut answer forever; the attempt the client signed is still charged only once,
// and once an attempt completes, retries replay it.
func TestCancelledKeyRunsAgain(t *testing.T) {
	l, path := openLedger(t, "")
	a := account(1)
	attempt := func(n int) billing.Reservation {
		return billing.Reservation{Account: a, RequestHash: hash("key-1 request"), SignatureHash: hash("signed attempt", n),
			IdempotencyKey: "key-1", MaxCost: 10, Limit: 1000}
	}
	finish := func(res billing.Reservation, status string, response []byte) *settle.Receipt {
		t.Helper()
		id, err := l.Reserve(ctx, res)
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		r := bill(res, 3)
		r.Status = status
		if err := l.Commit(ctx, id, r, response, sign); err != nil {
			t.Fatal(err)
		}
		return r
	}
	cut := finish(attempt(1), settle.StatusCancelled, []byte("a cut stream"))
	// The same signed attempt again: a replay, refused.
	if _, err := l.Reserve(ctx, attempt(1)); err != billing.ErrReplay {
		t.Fatalf("the cancelled attempt sent again: %v, want ErrReplay", err)
	}
	// A new attempt under the key runs; while it runs the key is in progress.
	id, err := l.Reserve(ctx, attempt(2))
	if err != nil {
		t.Fatalf("retry after a cancelled attempt: %v", err)
	}
	if _, err := l.Reserve(ctx, attempt(3)); !errors.Is(err, billing.ErrInProgress) {
		t.Fatalf("during the retry: %v, want ErrInProgress", err)
	}
	done := bill(attempt(2), 5)
	if err := l.Commit(ctx, id, done, []byte("the whole answer"), sign); err != nil {
		t.Fatal(err)
	}
	// Completed: replayed from now on, also after a restart.
	for _, stage := range []string{"completed", "after reopen"} {
		if stage == "after reopen" {
			l = reopen(t, l, path)
		}
		var ie *billing.IdempotentError
		if _, err := l.Reserve(ctx, attempt(4)); !errors.As(err, &ie) || ie.Err != nil || string(ie.Response) != "the whole answer" || ie.Receipt.Seq != done.Seq {
			t.Fatalf("%s: %v, want the completed attempt's receipt and response", stage, err)
		}
		if _, err := l.Reserve(ctx, attempt(1)); err == nil {
			t.Fatalf("%s: the cancelled attempt admitted again", stage)
		}
	}
	// Both attempts are receipts: the cut one charged what it delivered.
	rs := verifyChain(t, l, a)
	if len(rs) != 2 || rs[0].Status != settle.StatusCancelled || rs[0].Cost != cut.Cost || rs[1].Status != settle.StatusCompleted {
		t.Fatalf("receipts %+v", rs)
	}

	// An API-key request (no signature hash) under a key: the same.
	api := billing.Reservation{Account: a, RequestHash: hash("key-2 request"), IdempotencyKey: "key-2", MaxCost: 10, Limit: 1000}
	finish(api, settle.StatusCancelled, nil)
	finish(api, settle.StatusCompleted, []byte("answer"))
	var ie *billing.IdempotentError
	if _, err := l.Reserve(ctx, api); !errors.As(err, &ie) || string(ie.Response) != "answer" {
		t.Fatalf("API-key retry after completion: %v", err)
	}
	// A request that failed on the host's side is replayed, not run again.
	failed := billing.Reservation{Account: a, RequestHash: hash("key-3 request"), IdempotencyKey: "key-3", MaxCost: 10, Limit: 1000}
	finish(failed, settle.StatusFailed, []byte("error"))
	if _, err := l.Reserve(ctx, failed); !errors.As(err, &ie) || string(ie.Response) != "error" {
		t.Fatalf("retry after a failure: %v, want the failure replayed", err)
	}
}

// verifyChain checks account's chain against hostKey and returns it.
func verifyChain(t testing.TB, l *ledger.Ledger, account string) []settle.Receipt {
	t.Helper()
	rs, err := l.Receipts(ctx, account, 1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := settle.VerifyChain(rs, hostKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestCommitErrors(t *testing.T) {
	l, _ := openLedger(t, "")
	a := account(1)
	res := billing.Reservation{Account: a, RequestHash: hash("r"), MaxCost: 10, Limit: 1000}
	id, err := l.Reserve(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		id     billing.HoldID
		mutate func(*settle.Receipt)
	}{
		{name: "unknown hold", id: id + 1},
		{name: "cost over max cost", id: id, mutate: func(r *settle.Receipt) { r.Cost, r.MaxCost = 11, 11 }},
		{name: "other account", id: id, mutate: func(r *settle.Receipt) { r.Account = account(2) }},
		{name: "other request", id: id, mutate: func(r *settle.Receipt) { r.RequestHash = hash("x") }},
	} {
		r := bill(res, 5)
		if tc.mutate != nil {
			tc.mutate(r)
		}
		signed := false
		err := l.Commit(ctx, tc.id, r, nil, func(r *settle.Receipt) { signed = true; sign(r) })
		if err == nil || signed {
			t.Errorf("%s: Commit returned %v, signed %v", tc.name, err, signed)
		}
		if (tc.id != id) != (err == billing.ErrUnknownHold) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The hold is still there, whole.
	if totals, _ := l.Account(ctx, a); totals.Held != 10 || totals.LastSeq != 0 {
		t.Fatalf("after failed commits: %+v", totals)
	}
	if err := l.Commit(ctx, id, bill(res, 10), nil, sign); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, id, bill(res, 10), nil, sign); err != billing.ErrUnknownHold {
		t.Fatalf("second commit: %v, want ErrUnknownHold", err)
	}
	if err := l.Release(id); err != billing.ErrUnknownHold {
		t.Fatalf("release after commit: %v, want ErrUnknownHold", err)
	}
	if totals, _ := l.Account(ctx, a); totals.Held != 0 || totals.LastSeq != 1 || totals.Cumulative != 10 {
		t.Fatalf("after commit: %+v", totals)
	}

	for _, res := range []billing.Reservation{
		{RequestHash: hash("r")},
		{Account: a},
		{Account: string(make([]byte, 1025)), RequestHash: hash("r")},
		{Account: a, RequestHash: hash("r2"), IdempotencyKey: string(make([]byte, 1025))},
	} {
		if _, err := l.Reserve(ctx, res); err == nil {
			t.Errorf("Reserve(%.20q, %.20q, %.20q) succeeded", res.Account, res.RequestHash, res.IdempotencyKey)
		}
	}
}

func TestSettlement(t *testing.T) {
	l, path := openLedger(t, "")
	a, b := account(1), account(2)
	commit(t, l, billing.Reservation{Account: a, RequestHash: hash(1), MaxCost: 100, Limit: 1000}, 40, nil)
	commit(t, l, billing.Reservation{Account: a, RequestHash: hash(2), MaxCost: 100, Limit: 1000}, 60, nil)
	commit(t, l, billing.Reservation{Account: b, RequestHash: hash(3), MaxCost: 100, Limit: 1000}, 5, nil)
	if _, err := l.Reserve(ctx, billing.Reservation{Account: a, RequestHash: hash(4), MaxCost: 7, Limit: 1000}); err != nil {
		t.Fatal(err)
	}

	unsettled := func(stage string, want ...billing.AccountTotals) {
		t.Helper()
		got, err := l.Unsettled(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: Unsettled = %+v, want %+v", stage, got, want)
		}
		for i := range got {
			if !sameButTime(got[i], want[i]) || !got[i].SettledAt.Equal(want[i].SettledAt) {
				t.Fatalf("%s: Unsettled[%d] = %+v, want %+v", stage, i, got[i], want[i])
			}
		}
	}
	unsettled("start",
		billing.AccountTotals{Account: a, LastSeq: 2, Cumulative: 100, Held: 7},
		billing.AccountTotals{Account: b, LastSeq: 1, Cumulative: 5})

	t1 := time.Unix(1_700_000_000, 123)
	if err := l.RecordSettlement(ctx, a, 40, t1); err != nil {
		t.Fatal(err)
	}
	unsettled("a settled to 40",
		billing.AccountTotals{Account: a, LastSeq: 2, Cumulative: 100, Held: 7, Settled: 40, SettledAt: t1},
		billing.AccountTotals{Account: b, LastSeq: 1, Cumulative: 5})

	t2 := t1.Add(time.Minute)
	if err := l.RecordSettlement(ctx, a, 100, t2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []uint64{40, 99, 100} { // older or equal: ignored
		if err := l.RecordSettlement(ctx, a, c, t2.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.RecordSettlement(ctx, b, 6, t2); err == nil {
		t.Fatal("settling above the receipts succeeded")
	}
	if err := l.RecordSettlement(ctx, account(9), 1, t2); err == nil {
		t.Fatal("settling an unknown account succeeded")
	}
	want := billing.AccountTotals{Account: b, LastSeq: 1, Cumulative: 5}
	unsettled("a settled", want)

	l = reopen(t, l, path)
	unsettled("after reopen", want)
	got, err := l.Account(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if !sameButTime(got, billing.AccountTotals{Account: a, LastSeq: 2, Cumulative: 100, Settled: 100}) || !got.SettledAt.Equal(t2) {
		t.Fatalf("after reopen: %+v", got)
	}
}

// sameButTime compares totals but for SettledAt.
func sameButTime(a, b billing.AccountTotals) bool {
	a.SettledAt, b.SettledAt = time.Time{}, time.Time{}
	return a == b
}

func TestPrune(t *testing.T) {
	l, path := openLedger(t, "")
	a := account(1)
	t0 := time.Unix(1_700_000_000, 0)
	old := billing.Reservation{Account: a, RequestHash: hash("old"), IdempotencyKey: "old", MaxCost: 10, Limit: 1000, Time: t0}
	recent := billing.Reservation{Account: a, RequestHash: hash("new"), IdempotencyKey: "new", MaxCost: 10, Limit: 1000, Time: t0.Add(time.Hour)}
	commit(t, l, old, 1, []byte("old response"))
	commit(t, l, recent, 2, []byte("new response"))

	if err := l.Prune(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, path)

	// The old request is refused, after a restart too: the ledger may have forgotten
	// it, and a host clock moved back must not make it billable again.
	if _, err := l.Reserve(ctx, old); err != billing.ErrPruned {
		t.Fatalf("pruned request: %v, want ErrPruned", err)
	}
	// What is refused is what is not after every record forgotten, not everything
	// before the cutoff: a clock once far ahead by mistake refuses no request made
	// after those the host had seen.
	later := billing.Reservation{Account: a, RequestHash: hash("later"), MaxCost: 10, Limit: 1000, Time: t0.Add(time.Second)}
	commit(t, l, later, 1, nil)
	// An earlier cutoff (the clock moved back) does not lower the one in effect.
	if err := l.Prune(ctx, t0); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, path)
	if _, err := l.Reserve(ctx, old); err != billing.ErrPruned {
		t.Fatalf("pruned request after an earlier cutoff: %v, want ErrPruned", err)
	}
	// Its hash and key are forgotten: the same key and request at a time from the
	// cutoff on run again. The recent one's are not forgotten.
	again := old
	again.Time = t0.Add(time.Hour)
	if _, err := l.Reserve(ctx, again); err != nil {
		t.Fatalf("pruned request's key, later: %v", err)
	}
	reuse := recent
	reuse.IdempotencyKey = ""
	if _, err := l.Reserve(ctx, reuse); err != billing.ErrReplay {
		t.Fatalf("recent request: %v, want ErrReplay", err)
	}
	var ie *billing.IdempotentError
	if _, err := l.Reserve(ctx, recent); !errors.As(err, &ie) || string(ie.Response) != "new response" {
		t.Fatalf("recent idempotency key: %v", err)
	}
	// Receipts stay.
	if rs, err := l.Receipts(ctx, a, 1, 10); err != nil || len(rs) != 3 {
		t.Fatalf("receipts after prune: %d, %v", len(rs), err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.db")
	if _, err := ledger.Open(path, macKey[:ledger.MinMACKey-1]); err == nil || !strings.Contains(err.Error(), "a MAC key of at least 32 bytes is required") {
		t.Errorf("Open with a short key: %v", err)
	}
	l, err := ledger.Open(path, macKey)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := ledger.Open(path, macKey, ledger.WithLockTimeout(50*time.Millisecond)); !errors.Is(err, bolterrors.ErrTimeout) {
		t.Errorf("second open of a file in use: %v, want ErrTimeout", err)
	}
	l.Close()

	// boltFile creates a bbolt file with fill's buckets.
	boltFile := func(name string, fill func(tx *bolt.Tx) error) string {
		p := filepath.Join(dir, name)
		db, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fill); err != nil {
			t.Fatal(err)
		}
		db.Close()
		return p
	}
	version := func(v []byte) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("ledger"))
			if err != nil {
				return err
			}
			return b.Put([]byte("version"), v)
		}
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"newer schema", boltFile("v3.db", version(binary.BigEndian.AppendUint32(nil, 3))), "schema version 3, this build reads version 2"},
		{"no version", boltFile("nover.db", version(nil)), "not a ledger"},
		{"other bbolt file", boltFile("other.db", func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }), "not a ledger"},
		{"not bbolt", garbage, "invalid"},
	} {
		l, err := ledger.Open(tc.path, macKey)
		if err == nil {
			l.Close()
			t.Errorf("%s: opened", tc.name)
			continue
		}
		if !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestClose(t *testing.T) {
	l, _ := openLedger(t, "")
	a := account(1)
	res := billing.Reservation{Account: a, RequestHash: hash("r"), MaxCost: 10, Limit: 1000}
	id, err := l.Reserve(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res.RequestHash = hash("r2")
	for name, call := range map[string]func() error{
		"Reserve":          func() error { _, err := l.Reserve(ctx, res); return err },
		"Commit":           func() error { return l.Commit(ctx, id, bill(res, 1), nil, sign) },
		"Release":          func() error { return l.Release(id) },
		"Account":          func() error { _, err := l.Account(ctx, a); return err },
		"Receipts":         func() error { _, err := l.Receipts(ctx, a, 1, 10); return err },
		"Unsettled":        func() error { _, err := l.Unsettled(ctx); return err },
		"RecordSettlement": func() error { return l.RecordSettlement(ctx, a, 0, time.Now()) },
		"Prune":            func() error { return l.Prune(ctx, time.Now()) },
	} {
		if err := call(); err != ledger.ErrClosed {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseWhileCommitting closes the ledger under load: every call returns either
// success, and its receipt survives, or ErrClosed.
func TestCloseWhileCommitting(t *testing.T) {
	l, path := openLedger(t, "")
	a := account(1)
	var mu sync.Mutex
	var done []settle.Receipt
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				res := billing.Reservation{Account: a, RequestHash: hash(w, i), MaxCost: 10, Limit: math.MaxUint64}
				id, err := l.Reserve(ctx, res)
				if err == nil {
					r := bill(res, 3)
					if err = l.Commit(ctx, id, r, nil, sign); err == nil {
						mu.Lock()
						done = append(done, *r)
						mu.Unlock()
					}
				}
				if err == ledger.ErrClosed {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	l, _ = openLedger(t, path)
	chains := verifyAll(t, l, []string{a})
	if len(done) == 0 || len(chains[a]) != len(done) {
		t.Fatalf("%d commits returned, %d receipts stored", len(done), len(chains[a]))
	}
}

// TestConcurrent commits from many goroutines on several accounts, with idempotency
// keys and replays mixed in, then verifies every chain.
func TestConcurrent(t *testing.T) {
	l, path := openLedger(t, "")
	const accounts, workers, perWorker = 5, 12, 15
	var names []string
	for i := range accounts {
		names = append(names, account(i))
	}
	var mu sync.Mutex
	committed := make(map[string]uint64) // account → sum of costs
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				a := names[(w+i)%accounts]
				res := billing.Reservation{Account: a, RequestHash: hash(w, i), MaxCost: 50, Limit: math.MaxUint64}
				if i%3 == 0 {
					res.IdempotencyKey = fmt.Sprint("key-", w, "-", i)
				}
				id, err := l.Reserve(ctx, res)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := l.Reserve(ctx, res); err == nil {
					t.Error("a request in flight was reserved twice")
				}
				cost := uint64(w*31+i*17) % 60
				r := bill(res, cost)
				if err := l.Commit(ctx, id, r, []byte(res.RequestHash), sign); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed[a] += r.Cost
				mu.Unlock()
				if _, err := l.Account(ctx, a); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	l = reopen(t, l, path)
	chains := verifyAll(t, l, names)
	n := 0
	for _, a := range names {
		n += len(chains[a])
		if got := chains[a][len(chains[a])-1].Cumulative; got != committed[a] {
			t.Errorf("%s: cumulative %d, committed %d", a, got, committed[a])
		}
	}
	if n != workers*perWorker {
		t.Errorf("%d receipts, want %d", n, workers*perWorker)
	}
}

// TestReserveRefusesAReopenedEscrow: an escrow charged less than the ledger settled
// with it is another contract at the same address, which the account's receipts would
// be charged to again.
func TestReserveRefusesAReopenedEscrow(t *testing.T) {
	l, _ := openLedger(t, "")
	a := account(1)
	commit(t, l, billing.Reservation{Account: a, RequestHash: hash(1), MaxCost: 10, Limit: 1000}, 5, nil)
	if err := l.RecordSettlement(ctx, a, 5, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		charged uint64
		want    error
	}{{0, billing.ErrReopened}, {4, billing.ErrReopened}, {5, nil}, {6, nil}} {
		id, err := l.Reserve(ctx, billing.Reservation{Account: a, RequestHash: hash(2), MaxCost: 10, Limit: 1000, Charged: tc.charged})
		if err != tc.want {
			t.Errorf("charged %d: %v, want %v", tc.charged, err, tc.want)
		}
		if err == nil {
			l.Release(id)
		}
	}
}

// TestPruneRacingReserve: a request whose record a prune is forgetting is refused by
// a Reserve that runs at the same time, as a replay (its record still read) or as
// pruned (the mark raised first), never admitted in between. The two start together,
// so that either may come first.
func TestPruneRacingReserve(t *testing.T) {
	l, _ := openLedger(t, "")
	a := account(1)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 100 {
		res := billing.Reservation{Account: a, RequestHash: hash("race", i), MaxCost: 1, Limit: math.MaxUint64, Time: t0.Add(time.Duration(i) * time.Hour)}
		commit(t, l, res, 1, nil)
		start := make(chan struct{})
		pruned := make(chan error, 1)
		go func() {
			<-start
			pruned <- l.Prune(ctx, res.Time.Add(time.Minute))
		}()
		reserved := make(chan error, 1)
		go func() {
			<-start
			if i%2 == 0 {
				time.Sleep(time.Millisecond) // now and then after the prune
			}
			id, err := l.Reserve(ctx, res)
			if err == nil {
				l.Release(id)
			}
			reserved <- err
		}()
		close(start)
		if err := <-pruned; err != nil {
			t.Fatal(err)
		}
		switch err := <-reserved; err {
		case nil:
			t.Fatalf("round %d: a request being pruned was admitted again", i)
		case billing.ErrReplay, billing.ErrPruned:
		default:
			t.Fatalf("round %d: %v", i, err)
		}
	}
}
