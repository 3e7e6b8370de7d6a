package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// The file layout the attacks edit, as the package doc describes it.
const tag = sha256.Size

func accountKey(a string) []byte { return []byte(a) }

func prefixed(a string, rest []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), append([]byte(a), rest...)...)
}

func receiptKey(a string, seq uint64) []byte {
	return prefixed(a, binary.BigEndian.AppendUint64(nil, seq))
}

func stringKey(a, s string) []byte { return prefixed(a, []byte(s)) }

// editFile changes the closed ledger at path through bbolt, as the machine's owner can.
func editFile(t *testing.T, path string, edit func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(edit); err != nil {
		t.Fatal(err)
	}
}

// rewrite replaces the value of key in bucket with change(value), the tag kept as is.
func rewrite(bucket string, key []byte, change func(v []byte) []byte) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		v := b.Get(key)
		if v == nil {
			return errors.New("no such record")
		}
		changed := change(bytes.Clone(v))
		if bytes.Equal(changed, v) {
			return errors.New("the edit did not apply")
		}
		return b.Put(key, changed)
	}
}

// addUint64 adds n to the big-endian uint64 at offset off of v.
func addUint64(off int, n uint64) func(v []byte) []byte {
	return func(v []byte) []byte {
		binary.BigEndian.PutUint64(v[off:], binary.BigEndian.Uint64(v[off:])+n)
		return v
	}
}

// integrityFixture is a closed ledger file with a victim account (receipts, one of them
// for an idempotency key with its stored answer, part of it settled) and a bystander.
type integrityFixture struct {
	path             string
	victim, other    string
	idem             billing.Reservation
	victimCumulative uint64
}

func newIntegrityFixture(t *testing.T) *integrityFixture {
	t.Helper()
	f := &integrityFixture{path: filepath.Join(t.TempDir(), "ledger.db"), victim: account(1), other: account(2)}
	l, err := ledger.Open(f.path, macKey)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := commit(t, l, billing.Reservation{Account: f.victim, RequestHash: hash("v", i), MaxCost: 100, Limit: math.MaxUint64}, 40, nil)
		f.victimCumulative = r.Cumulative
		commit(t, l, billing.Reservation{Account: f.other, RequestHash: hash("o", i), MaxCost: 100, Limit: math.MaxUint64}, 30, nil)
	}
	f.idem = billing.Reservation{Account: f.victim, RequestHash: hash("idem"), IdempotencyKey: "key-1", MaxCost: 100, Limit: math.MaxUint64}
	f.victimCumulative = commit(t, l, f.idem, 50, []byte("the host's answer")).Cumulative
	if err := l.RecordSettlement(ctx, f.victim, 80, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTamperedRecordsAreRefused performs the machine owner's edits of the ledger file
// between two starts: each altered record makes its account refuse service (an error
// wrapping billing.ErrIntegrity, logged), is never charged by the settler, and leaves
// the other account untouched.
func TestTamperedRecordsAreRefused(t *testing.T) {
	forgeTag := func(v []byte) []byte { // a valid-looking HMAC under a key the attacker guesses
		m := hmac.New(sha256.New, bytes.Repeat([]byte{0}, 32))
		m.Write(v[:len(v)-tag])
		return append(v[:len(v)-tag], m.Sum(nil)...)
	}
	tests := []struct {
		name  string
		edit  func(f *integrityFixture) func(tx *bolt.Tx) error
		check string // which read must refuse: "account" (every read of it) or one of them
	}{
		{"cumulative raised", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("accounts", accountKey(f.victim), addUint64(8, 1e9))
		}, "account"},
		{"cumulative raised, tag forged under a guessed key", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("accounts", accountKey(f.victim), func(v []byte) []byte { return forgeTag(addUint64(8, 1e9)(v)) })
		}, "account"},
		{"settled lowered, so the settler charges again", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("accounts", accountKey(f.victim), addUint64(16, math.MaxUint64-79)) // 80 → 0
		}, "account"},
		{"the bystander's record copied over the victim's", func(f *integrityFixture) func(*bolt.Tx) error {
			return func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("accounts"))
				return b.Put(accountKey(f.victim), bytes.Clone(b.Get(accountKey(f.other))))
			}
		}, "account"},
		{"tag stripped, as schema 1 stored it", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("accounts", accountKey(f.victim), func(v []byte) []byte { return v[:len(v)-tag] })
		}, "account"},
		{"a receipt's cost changed", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("receipts", receiptKey(f.victim, 2), func(v []byte) []byte {
				return bytes.Replace(v, []byte(`"cost":"40"`), []byte(`"cost":"90"`), 1)
			})
		}, "receipts"},
		{"the stored answer of an idempotency key forged", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("idempotency", stringKey(f.victim, "key-1"), func(v []byte) []byte {
				return bytes.Replace(v, []byte("the host's answer"), []byte("a forged answer!!"), 1)
			})
		}, "retry"},
		{"the receipt an idempotency key replays swapped", func(f *integrityFixture) func(*bolt.Tx) error {
			return func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("receipts"))
				return b.Put(receiptKey(f.victim, 4), bytes.Clone(b.Get(receiptKey(f.victim, 1))))
			}
		}, "retry"},
		{"a request hash forged", func(f *integrityFixture) func(*bolt.Tx) error {
			return func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("requests")).Put(stringKey(f.victim, hash("new")), make([]byte, 8+tag))
			}
		}, "new request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newIntegrityFixture(t)
			editFile(t, f.path, tc.edit(f))
			var logs strings.Builder
			l, err := ledger.Open(f.path, macKey, ledger.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			refused := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, billing.ErrIntegrity) {
					t.Errorf("%s: %v, want billing.ErrIntegrity", what, err)
				}
			}
			switch tc.check {
			case "account":
				_, err := l.Account(ctx, f.victim)
				refused("Account", err)
				_, err = l.Reserve(ctx, billing.Reservation{Account: f.victim, RequestHash: hash("new"), MaxCost: 1, Limit: math.MaxUint64})
				refused("Reserve", err)
				refused("RecordSettlement", l.RecordSettlement(ctx, f.victim, f.victimCumulative, time.Now()))
				unsettled, err := l.Unsettled(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range unsettled {
					if u.Account == f.victim {
						t.Errorf("Unsettled lists the tampered account for charging: %+v", u)
					}
				}
				if len(unsettled) != 1 {
					t.Errorf("Unsettled = %+v, want the bystander only", unsettled)
				}
			case "receipts":
				_, err := l.Receipts(ctx, f.victim, 1, 10)
				refused("Receipts", err)
			case "retry":
				_, err := l.Reserve(ctx, f.idem)
				refused("retry of the idempotent request", err)
			case "new request":
				_, err := l.Reserve(ctx, billing.Reservation{Account: f.victim, RequestHash: hash("new"), MaxCost: 1, Limit: math.MaxUint64})
				refused("Reserve", err)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "fails its integrity check") {
				t.Errorf("the refusal was not logged loudly:\n%s", logs.String())
			}
			// The bystander is served as before.
			if tot, err := l.Account(ctx, f.other); err != nil || tot.Cumulative != 90 {
				t.Errorf("bystander: %+v, %v", tot, err)
			}
			commit(t, l, billing.Reservation{Account: f.other, RequestHash: hash("o", "after"), MaxCost: 100, Limit: math.MaxUint64}, 10, nil)
		})
	}
}

// TestRolledBackRecordNeverOverwritesAReceipt: an account record rolled back to an
// earlier authentic value cannot be told from the current one by its tag, but the next
// receipt would land on a receipt that exists: the commit is refused.
func TestRolledBackRecordNeverOverwritesAReceipt(t *testing.T) {
	l, path := openLedger(t, "")
	a := account(1)
	commit(t, l, billing.Reservation{Account: a, RequestHash: hash(1), MaxCost: 10, Limit: math.MaxUint64}, 5, nil)
	var old []byte
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, path, func(tx *bolt.Tx) error {
		old = bytes.Clone(tx.Bucket([]byte("accounts")).Get(accountKey(a)))
		return nil
	})
	l, _ = openLedger(t, path)
	commit(t, l, billing.Reservation{Account: a, RequestHash: hash(2), MaxCost: 10, Limit: math.MaxUint64}, 5, nil)
	l.Close()
	editFile(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("accounts")).Put(accountKey(a), old) })

	l, _ = openLedger(t, path)
	res := billing.Reservation{Account: a, RequestHash: hash(3), MaxCost: 10, Limit: math.MaxUint64}
	id, err := l.Reserve(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, id, bill(res, 5), nil, sign); !errors.Is(err, billing.ErrIntegrity) {
		t.Fatalf("Commit over receipt 2: %v, want billing.ErrIntegrity", err)
	}
	if rs, err := l.Receipts(ctx, a, 2, 1); err != nil || len(rs) != 1 || rs[0].RequestHash != hash(2) {
		t.Fatalf("receipt 2 was overwritten: %+v, %v", rs, err)
	}
}

// downgrade turns the closed ledger at path into schema 1 as an earlier version wrote
// it: no tags, version 1.
func downgrade(t *testing.T, path string) {
	t.Helper()
	editFile(t, path, func(tx *bolt.Tx) error {
		for _, name := range []string{"accounts", "receipts", "requests", "idempotency"} {
			b := tx.Bucket([]byte(name))
			var keys, values [][]byte
			b.ForEach(func(k, v []byte) error {
				keys, values = append(keys, bytes.Clone(k)), append(values, bytes.Clone(v[:len(v)-tag]))
				return nil
			})
			for i := range keys {
				if err := b.Put(keys[i], values[i]); err != nil {
					return err
				}
			}
		}
		return tx.Bucket([]byte("ledger")).Put([]byte("version"), binary.BigEndian.AppendUint32(nil, 1))
	})
}

// TestUpgradeSchema1 opens a ledger an earlier version wrote: it is upgraded when every
// receipt verifies, with nothing lost but the stored idempotency answers, and refused,
// unchanged, when anything was forged.
func TestUpgradeSchema1(t *testing.T) {
	settlementKey := hostKey.Public().(ed25519.PublicKey)
	quiet := ledger.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

	f := newIntegrityFixture(t)
	downgrade(t, f.path)
	if _, err := ledger.Open(f.path, macKey); err == nil || !strings.Contains(err.Error(), "needs the settlement key") {
		t.Fatalf("Open of schema 1 without the settlement key: %v", err)
	}
	l, err := ledger.Open(f.path, macKey, ledger.WithReceiptKey(settlementKey), quiet)
	if err != nil {
		t.Fatal(err)
	}
	chains := verifyAll(t, l, []string{f.victim, f.other})
	if tot, _ := l.Account(ctx, f.victim); len(chains[f.victim]) != 4 || tot.Cumulative != f.victimCumulative || tot.Settled != 80 {
		t.Errorf("victim after the upgrade: %d receipts, %+v", len(chains[f.victim]), tot)
	}
	// The stored answer is gone, not served unverified; the request is still not billed twice.
	if _, err := l.Reserve(ctx, f.idem); err != billing.ErrReplay {
		t.Errorf("retry after the upgrade: %v, want ErrReplay", err)
	}
	l = reopen(t, l, f.path) // schema 2 now: no settlement key needed
	commit(t, l, billing.Reservation{Account: f.victim, RequestHash: hash("after upgrade"), MaxCost: 10, Limit: math.MaxUint64, Charged: 80}, 1, nil)
	l.Close()

	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	for _, tc := range []struct {
		name, want string
		edit       func(f *integrityFixture) func(*bolt.Tx) error
		key        ed25519.PublicKey
	}{
		{"cumulative raised", "its receipts add up to", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("accounts", accountKey(f.victim), addUint64(8, 1e9))
		}, settlementKey},
		{"a receipt's cost changed", "bad signature", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("receipts", receiptKey(f.victim, 2), func(v []byte) []byte {
				return bytes.Replace(v, []byte(`"cost":"40"`), []byte(`"cost":"90"`), 1)
			})
		}, settlementKey},
		{"receipts planted for an account with none", "belong to no account", func(f *integrityFixture) func(*bolt.Tx) error {
			return func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("receipts"))
				var r settle.Receipt
				json.Unmarshal(b.Get(receiptKey(f.victim, 1)), &r)
				r.Account = account(7)
				raw, _ := json.Marshal(r)
				return b.Put(receiptKey(account(7), 1), raw)
			}
		}, settlementKey},
		{"settled above cumulative", "above its cumulative", func(f *integrityFixture) func(*bolt.Tx) error {
			return rewrite("accounts", accountKey(f.other), addUint64(16, 1e9))
		}, settlementKey},
		{"receipts signed by another key", "signed by another key", func(*integrityFixture) func(*bolt.Tx) error {
			return func(*bolt.Tx) error { return nil }
		}, other.Public().(ed25519.PublicKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIntegrityFixture(t)
			downgrade(t, f.path)
			editFile(t, f.path, tc.edit(f))
			before, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			if l, err := ledger.Open(f.path, macKey, ledger.WithReceiptKey(tc.key), quiet); err == nil || !strings.Contains(err.Error(), tc.want) {
				if err == nil {
					l.Close()
				}
				t.Fatalf("Open: %v, want %q", err, tc.want)
			}
			if after, _ := os.ReadFile(f.path); !bytes.Equal(before, after) {
				t.Error("a refused upgrade changed the file")
			}
		})
	}
}

// TestLoweredPruneCutoffIsRefused: the machine's owner lowers the cutoff the ledger has
// pruned at, so that a request it forgot would be reserved again once the host's clock
// is set back. The ledger does not open: it could no longer tell a replay from a new
// request on any account.
func TestLoweredPruneCutoffIsRefused(t *testing.T) {
	f := newIntegrityFixture(t)
	l, err := ledger.Open(f.path, macKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Prune(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, f.path, rewrite("ledger", []byte("pruned_before"), addUint64(0, math.MaxUint64-uint64(48*time.Hour)+1)))
	if _, err := ledger.Open(f.path, macKey, ledger.WithLogger(slog.New(slog.DiscardHandler))); !errors.Is(err, billing.ErrIntegrity) {
		t.Fatalf("Open of a ledger whose prune cutoff was lowered: %v, want billing.ErrIntegrity", err)
	}
}
