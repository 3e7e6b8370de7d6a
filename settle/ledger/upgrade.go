package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonhost/cocoon/settle"
)

// errUpgrade1 starts the refusals of a schema-1 file.
var errUpgrade1 = errors.New("schema version 1, written by an earlier version without authenticated records")

// upgrade1 turns a schema-1 file, whose records carry no tags, into schema 2 within tx,
// trusting nothing it cannot verify: every account's receipts must form a chain signed
// by settlementKey from seq 1 that adds up to the account's record, the settled amount may
// not exceed it, and every receipt must belong to an account. The receipts, account
// records and request hashes are then tagged; the idempotency records are dropped,
// since nothing vouches for the answers they hold. A file that does not verify is
// refused as it is, so that the operator can restore a good copy.
//
// What it cannot verify: the settled amounts and times, which the settler checks
// against each escrow on-chain anyway, and the request hashes, a forged one of which can
// only refuse a request as a replay. Cost: one ed25519 verification per receipt, once.
func (l *Ledger) upgrade1(tx *bolt.Tx, settlementKey ed25519.PublicKey) error {
	if settlementKey == nil {
		return fmt.Errorf("%w: upgrading it needs the settlement key its receipts are signed with", errUpgrade1)
	}
	for _, name := range [][]byte{bucketAccounts, bucketReceipts, bucketRequests, bucketIdempotency} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: no %s bucket", errUpgrade1, name)
		}
	}
	type record struct{ bucket, key, value []byte }
	var tagged []record
	keep := func(bucket, k, v []byte) { tagged = append(tagged, record{bucket, bytes.Clone(k), bytes.Clone(v)}) }

	receipts := 0
	err := tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
		account := string(k)
		m, err := decodeMeta(v)
		if err != nil {
			return fmt.Errorf("account %s: %w", account, err)
		}
		var chain []settle.Receipt
		prefix := accountPrefix(account, 0)
		c := tx.Bucket(bucketReceipts).Cursor()
		for rk, rv := c.Seek(prefix); rk != nil && bytes.HasPrefix(rk, prefix); rk, rv = c.Next() {
			var r settle.Receipt
			if err := json.Unmarshal(rv, &r); err != nil {
				return fmt.Errorf("account %s: receipt %x: %w", account, rk[len(prefix):], err)
			}
			if r.Account != account || !bytes.Equal(rk, receiptKey(account, r.Seq)) {
				return fmt.Errorf("account %s: receipt %d is stored under another account or seq", account, r.Seq)
			}
			chain = append(chain, r)
			keep(bucketReceipts, rk, rv)
		}
		switch {
		case uint64(len(chain)) != m.lastSeq:
			return fmt.Errorf("account %s: %d receipts, its record says %d", account, len(chain), m.lastSeq)
		case m.settled > m.cumulative:
			return fmt.Errorf("account %s: settled %d, above its cumulative %d", account, m.settled, m.cumulative)
		case len(chain) == 0 && m.cumulative != 0:
			return fmt.Errorf("account %s: cumulative %d without receipts", account, m.cumulative)
		case len(chain) > 0:
			cumulative, err := settle.VerifyChain(chain, settlementKey)
			if err != nil {
				return fmt.Errorf("account %s: %w", account, err)
			}
			if chain[0].Seq != 1 || cumulative != m.cumulative {
				return fmt.Errorf("account %s: its receipts add up to %d from seq %d, its record says %d", account, cumulative, chain[0].Seq, m.cumulative)
			}
		}
		receipts += len(chain)
		keep(bucketAccounts, k, v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w, does not verify, so it is not upgraded: %w", errUpgrade1, err)
	}
	if n := tx.Bucket(bucketReceipts).Stats().KeyN; n != receipts {
		return fmt.Errorf("%w, does not verify, so it is not upgraded: %d receipts belong to no account", errUpgrade1, n-receipts)
	}
	err = tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("corrupt request record of %d bytes", len(v))
		}
		keep(bucketRequests, k, v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errUpgrade1, err)
	}
	dropped := tx.Bucket(bucketIdempotency).Stats().KeyN
	if err := tx.DeleteBucket(bucketIdempotency); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketIdempotency); err != nil {
		return err
	}
	for _, r := range tagged {
		if err := l.rec.put(tx, r.bucket, r.key, r.value); err != nil {
			return err
		}
	}
	l.rec.log.Warn("ledger upgraded from schema 1: receipts verified and records authenticated; stored idempotency answers dropped (a retry of those requests is refused as a replay)",
		"receipts", receipts, "idempotency_records_dropped", dropped)
	return tx.Bucket(bucketLedger).Put(keyVersion, binary.BigEndian.AppendUint32(nil, schemaVersion))
}
