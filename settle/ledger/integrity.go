package ledger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonhost/cocoon/settle/billing"
)

// MinMACKey is the least size of the key that authenticates a ledger's records.
const MinMACKey = 32

// tagSize is the size of the tag that ends every authenticated record.
const tagSize = sha256.Size

// macDomain starts the input of every record's tag.
const macDomain = "cocoon-host ledger v2"

// records reads and writes the authenticated records of a ledger file. The file lives on
// a disk the machine's owner can write, who would gain from a higher account total
// (charged to the client's escrow) or a forged stored answer (replayed to a client as
// the host's), so every record of the accounts, receipts, requests and idempotency
// buckets ends with a tag:
//
//	HMAC-SHA256(key, lp("cocoon-host ledger v2") || lp(bucket) || lp(record key) || value)
//
// where lp is a 4-byte big-endian length and the bytes, and key is a secret only the
// host has (cocoon-host derives it from its root sealing secret). A record that was
// altered, forged, or moved to another key or bucket fails its check on read; the error
// wraps billing.ErrIntegrity and is logged at error level. A record deleted, or rolled
// back to an earlier authentic value, cannot be told apart this way (see RATIONALE.md).
type records struct {
	key []byte
	log *slog.Logger
}

// tag is the tag of value stored under key in bucket.
func (a records) tag(bucket, key, value []byte) []byte {
	m := hmac.New(sha256.New, a.key)
	for _, f := range [][]byte{[]byte(macDomain), bucket, key} {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		m.Write(f)
	}
	m.Write(value)
	return m.Sum(nil)
}

// put stores value under key in bucket, followed by its tag.
func (a records) put(tx *bolt.Tx, bucket, key, value []byte) error {
	stored := make([]byte, 0, len(value)+tagSize)
	stored = append(stored, value...)
	return tx.Bucket(bucket).Put(key, append(stored, a.tag(bucket, key, value)...))
}

// get returns the value stored under key in bucket, its tag checked and removed, or nil
// when there is none. Like bbolt's, the value is valid for the transaction only.
func (a records) get(tx *bolt.Tx, bucket, key []byte) ([]byte, error) {
	stored := tx.Bucket(bucket).Get(key)
	if stored == nil {
		return nil, nil
	}
	return a.open(bucket, key, stored)
}

// open checks the tag of stored, read from bucket under key, and returns the value
// before it. A mismatch is an error wrapping billing.ErrIntegrity, and is logged.
func (a records) open(bucket, key, stored []byte) ([]byte, error) {
	if len(stored) >= tagSize {
		value := stored[:len(stored)-tagSize]
		if hmac.Equal(stored[len(value):], a.tag(bucket, key, value)) {
			return value, nil
		}
	}
	a.log.Error("ledger record fails its integrity check: altered or forged on disk; nothing is served or charged from it until it is restored",
		"bucket", string(bucket), "key", fmt.Sprintf("%q", key))
	return nil, fmt.Errorf("%w: %s record %q", billing.ErrIntegrity, bucket, key)
}
