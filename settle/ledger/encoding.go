package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// accountPrefix starts every key of account in the receipts, requests and idempotency
// buckets: the account's length as a big-endian uint16, then the account. The length
// makes the prefix unambiguous (no account's prefix is a prefix of another's), so a
// cursor seek to it visits exactly that account's keys.
func accountPrefix(account string, extra int) []byte {
	b := make([]byte, 0, 2+len(account)+extra)
	b = binary.BigEndian.AppendUint16(b, uint16(len(account)))
	return append(b, account...)
}

// receiptKey is account's prefix followed by seq in big-endian, so that an account's
// receipts sort by seq.
func receiptKey(account string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(accountPrefix(account, 8), seq)
}

// stringKey is account's prefix followed by s (a request hash or an idempotency key).
func stringKey(account, s string) []byte {
	return append(accountPrefix(account, len(s)), s...)
}

// meta is an account's record in the accounts bucket.
type meta struct {
	lastSeq    uint64
	cumulative uint64
	settled    uint64
	settledAt  time.Time
}

const metaSize = 32

func (m meta) encode() []byte {
	b := make([]byte, 0, metaSize)
	b = binary.BigEndian.AppendUint64(b, m.lastSeq)
	b = binary.BigEndian.AppendUint64(b, m.cumulative)
	b = binary.BigEndian.AppendUint64(b, m.settled)
	return binary.BigEndian.AppendUint64(b, encodeTime(m.settledAt))
}

// decodeMeta decodes an account record; nil (an unknown account) is the zero meta.
func decodeMeta(b []byte) (meta, error) {
	if b == nil {
		return meta{}, nil
	}
	if len(b) != metaSize {
		return meta{}, fmt.Errorf("ledger: corrupt account record: %d bytes, want %d", len(b), metaSize)
	}
	return meta{
		lastSeq:    binary.BigEndian.Uint64(b),
		cumulative: binary.BigEndian.Uint64(b[8:]),
		settled:    binary.BigEndian.Uint64(b[16:]),
		settledAt:  decodeTime(b[24:]),
	}, nil
}

// encodeTime is t in Unix nanoseconds, 0 for the zero time (and for any time before
// 1970, which a ledger never records).
func encodeTime(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

func decodeTime(b []byte) time.Time {
	n := binary.BigEndian.Uint64(b)
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n))
}

// idemRecord is a completed request's record in the idempotency bucket:
//
//	time:uint64 seq:uint64 hash_len:uint16 hash response
//
// time comes first so that Prune reads it without decoding the rest.
type idemRecord struct {
	time        time.Time
	seq         uint64
	requestHash string
	response    []byte
}

func (r idemRecord) encode() []byte {
	b := make([]byte, 0, 18+len(r.requestHash)+len(r.response))
	b = binary.BigEndian.AppendUint64(b, encodeTime(r.time))
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.requestHash)))
	b = append(b, r.requestHash...)
	return append(b, r.response...)
}

// decodeIdemRecord decodes an idempotency record; the response is copied out of b, which
// bbolt owns only for the transaction's lifetime.
func decodeIdemRecord(b []byte) (idemRecord, error) {
	if len(b) < 18 || len(b) < 18+int(binary.BigEndian.Uint16(b[16:])) {
		return idemRecord{}, fmt.Errorf("ledger: corrupt idempotency record of %d bytes", len(b))
	}
	n := 18 + int(binary.BigEndian.Uint16(b[16:]))
	return idemRecord{
		time:        decodeTime(b),
		seq:         binary.BigEndian.Uint64(b[8:]),
		requestHash: string(b[18:n]),
		response:    bytes.Clone(b[n:]),
	}, nil
}
