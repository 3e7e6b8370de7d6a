package ledger

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
)

// testRecords authenticates with a fixed key and logs nowhere.
func testRecords() records {
	return records{key: bytes.Repeat([]byte{1}, MinMACKey), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// BenchmarkRecordCheck measures the integrity check of one account record on read, the
// work each authenticated read adds (Reserve reads up to three records, Commit writes up
// to four): compare with BenchmarkReserve and BenchmarkCommit in the same run.
func BenchmarkRecordCheck(b *testing.B) {
	rec := testRecords()
	key := []byte("0:" + string(bytes.Repeat([]byte{'a'}, 64)))
	value := meta{lastSeq: 1000, cumulative: 1e12, settled: 1e11}.encode()
	stored := append(value, rec.tag(bucketAccounts, key, value)...)
	for b.Loop() {
		if _, err := rec.open(bucketAccounts, key, stored); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzRecordOpen feeds the check records read back from the untrusted disk: it never
// panics, and accepts nothing but a value followed by its own tag under its own bucket
// and key.
func FuzzRecordOpen(f *testing.F) {
	rec := testRecords()
	key := []byte("account")
	value := meta{lastSeq: 1, cumulative: 10}.encode()
	f.Add(append(value, rec.tag(bucketAccounts, key, value)...))
	f.Add([]byte{})
	f.Add(make([]byte, tagSize))
	f.Fuzz(func(t *testing.T, stored []byte) {
		got, err := rec.open(bucketAccounts, key, stored)
		if err != nil {
			return
		}
		if !bytes.Equal(append(bytes.Clone(got), rec.tag(bucketAccounts, key, got)...), stored) {
			t.Fatalf("accepted %x", stored)
		}
		if _, err := rec.open(bucketReceipts, key, stored); err == nil {
			t.Fatal("a record opened under another bucket")
		}
	})
}
