package ledger

import (
	"bytes"
	"log/slog"
	"testing"
)

// BenchmarkRecordCheck measures the integrity check of one account record on read, the
// work each authenticated read adds (Reserve reads up to three records, Commit writes up
// to four): compare with BenchmarkReserve and BenchmarkCommit in the same run.
func BenchmarkRecordCheck(b *testing.B) {
	rec := records{key: bytes.Repeat([]byte{1}, MinMACKey), log: slog.Default()}
	key := []byte("0:" + string(bytes.Repeat([]byte{'a'}, 64)))
	value := meta{lastSeq: 1000, cumulative: 1e12, settled: 1e11}.encode()
	stored := append(value, rec.tag(bucketAccounts, key, value)...)
	for b.Loop() {
		if _, err := rec.open(bucketAccounts, key, stored); err != nil {
			b.Fatal(err)
		}
	}
}
