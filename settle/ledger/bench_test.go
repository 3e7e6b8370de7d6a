package ledger_test

import (
	"math"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/settle/billing"
)

// BenchmarkReserve measures admission: a hold on an account with a receipt, and its
// release (both in memory, plus Reserve's read-only transaction).
func BenchmarkReserve(b *testing.B) {
	l, _ := openLedger(b, "")
	a := account(1)
	commit(b, l, billing.Reservation{Account: a, RequestHash: hash("first"), MaxCost: 10, Limit: math.MaxUint64}, 1, nil)
	var hashes [1024]string
	for i := range hashes {
		hashes[i] = hash(i)
	}
	for i := 0; b.Loop(); i++ {
		id, err := l.Reserve(ctx, billing.Reservation{Account: a, RequestHash: hashes[i%len(hashes)], IdempotencyKey: "k", MaxCost: 10, Limit: math.MaxUint64})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit measures a request's whole ledger cost: Reserve, and Commit with its
// ed25519 signature and fsync.
func BenchmarkCommit(b *testing.B) {
	l, _ := openLedger(b, "")
	a := account(1)
	for i := 0; b.Loop(); i++ {
		commit(b, l, billing.Reservation{Account: a, RequestHash: hash(i), IdempotencyKey: hash("k", i), MaxCost: 1000, Limit: math.MaxUint64}, 500, []byte("response"))
	}
}

// BenchmarkCommitParallel is BenchmarkCommit from GOMAXPROCS goroutines on 8 accounts.
func BenchmarkCommitParallel(b *testing.B) {
	l, _ := openLedger(b, "")
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			commit(b, l, billing.Reservation{Account: account(i % 8), RequestHash: hash(i), IdempotencyKey: hash("k", i), MaxCost: 1000, Limit: math.MaxUint64}, 500, []byte("response"))
		}
	})
}
