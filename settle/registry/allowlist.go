package registry

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Kind is what an allowlist entry measures. Its value is exactly the bytes
// the host measures for it: the data of a boot event log entry, or a register
// of the TDX quote.
type Kind uint8

// The kinds of allowlist entries (REGISTRY.md "Allowlist").
const (
	KindHostBinary    Kind = 1 // host-binary event: sha256 of the host executable, 32 bytes
	KindABIVersion    Kind = 2 // abi-version event: uint32 big-endian, 4 bytes
	KindSandboxPolicy Kind = 3 // sandbox-policy event: sha256 of the policy, 32 bytes
	KindModel         Kind = 4 // model event: its text, such as "sha256:<hex of the weights>", 1..93 bytes
	KindMRTD          Kind = 5 // the quote's MRTD (the TD image), 48 bytes
	KindRTMR0         Kind = 6 // the quote's RTMR0 (firmware configuration), 48 bytes
	KindRTMR1         Kind = 7 // the quote's RTMR1 (kernel), 48 bytes
	KindRTMR2         Kind = 8 // the quote's RTMR2 (kernel command line, initrd), 48 bytes
)

// requiredKinds must each have an entry matching the host: an allowlist with
// no entry of such a kind allows no host at all. The quote's registers are
// optional: no entry of their kind means any value.
var requiredKinds = []Kind{KindHostBinary, KindABIVersion, KindSandboxPolicy, KindModel}

var kindNames = map[Kind]string{
	KindHostBinary: "host-binary", KindABIVersion: "abi-version", KindSandboxPolicy: "sandbox-policy",
	KindModel: "model", KindMRTD: "mrtd", KindRTMR0: "rtmr0", KindRTMR1: "rtmr1", KindRTMR2: "rtmr2",
}

// KindByName returns the kind REGISTRY.md names name. The names of the kinds
// measured in the event log are those of their events (attest.EventType), so a
// client fills Measurements from a verified log with
// m[KindByName(string(e.Type))] = e.Data.
func KindByName(name string) (Kind, bool) {
	for k, n := range kindNames {
		if n == name {
			return k, true
		}
	}
	return 0, false
}

// String returns the kind's name in REGISTRY.md.
func (k Kind) String() string {
	if name, ok := kindNames[k]; ok {
		return name
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// checkValue reports whether value has the size k's values have.
func (k Kind) checkValue(value []byte) error {
	var ok bool
	switch k {
	case KindHostBinary, KindSandboxPolicy:
		ok = len(value) == 32
	case KindABIVersion:
		ok = len(value) == 4
	case KindModel:
		ok = len(value) >= 1 && len(value) <= MaxEntryBytes
	case KindMRTD, KindRTMR0, KindRTMR1, KindRTMR2:
		ok = len(value) == 48
	default:
		return fmt.Errorf("registry: allowlist: unknown kind %d", uint8(k))
	}
	if !ok {
		return fmt.Errorf("registry: allowlist: a %s value of %d bytes", k, len(value))
	}
	return nil
}

// MaxEntryBytes is the longest allowlist value: what a dictionary leaf holds
// beside the longest key label (11 + 264 bits).
const MaxEntryBytes = 93

// Entry is one accepted value of one kind.
type Entry struct {
	Kind  Kind
	Value []byte
}

// Allowlist is the set of accepted measurements. The zero value is empty and
// allows no host.
type Allowlist struct {
	Entries []Entry
}

// allowlistKeyBits is the dictionary key: kind:uint8 ++ sha256(value).
const allowlistKeyBits = 8 + 256

// Cell returns the allowlist as REGISTRY.md lays it out: a dictionary keyed
// by kind:uint8 ++ sha256(value):bits256 whose values are the raw bytes; nil
// for an empty allowlist (HashmapE's empty form). It fails on an entry of an
// unknown kind or of the wrong size, and on a duplicate.
func (a Allowlist) Cell() (*cell.Cell, error) {
	if len(a.Entries) == 0 {
		return nil, nil
	}
	d := cell.NewDict(allowlistKeyBits)
	for _, e := range a.Entries {
		if err := e.Kind.checkValue(e.Value); err != nil {
			return nil, err
		}
		key := entryKey(e)
		if _, err := d.LoadValue(key); err == nil {
			return nil, fmt.Errorf("registry: allowlist: %s %x listed twice", e.Kind, e.Value)
		}
		if err := d.SetBuilder(key, cell.BeginCell().MustStoreSlice(e.Value, uint(8*len(e.Value)))); err != nil {
			return nil, fmt.Errorf("registry: allowlist: %w", err)
		}
	}
	return d.AsCell(), nil
}

func entryKey(e Entry) *cell.Cell {
	h := sha256.Sum256(e.Value)
	return cell.BeginCell().MustStoreUInt(uint64(e.Kind), 8).MustStoreSlice(h[:], 256).EndCell()
}

// ParseAllowlist decodes an allowlist cell as a get-method returns it (nil:
// empty). The contract stores whatever its owner proposed, so this is where a
// malformed one is caught: an entry of an unknown kind, of the wrong size, or
// under a key that is not its own hash is an error, and a client that gets
// one routes to no host of this registry. Entries come out sorted by key.
func ParseAllowlist(c *cell.Cell) (Allowlist, error) {
	if c == nil {
		return Allowlist{}, nil
	}
	kvs, err := c.AsDict(allowlistKeyBits).LoadAll()
	if err != nil {
		return Allowlist{}, fmt.Errorf("registry: allowlist: %w", err)
	}
	out := Allowlist{Entries: make([]Entry, 0, len(kvs))}
	for _, kv := range kvs {
		kind, err := kv.Key.LoadUInt(8)
		if err != nil {
			return Allowlist{}, fmt.Errorf("registry: allowlist key: %w", err)
		}
		hash, err := kv.Key.LoadSlice(256)
		if err != nil {
			return Allowlist{}, fmt.Errorf("registry: allowlist key: %w", err)
		}
		if kv.Value.RefsNum() != 0 || kv.Value.BitsLeft()%8 != 0 {
			return Allowlist{}, errors.New("registry: allowlist: a value that is not whole bytes")
		}
		value, err := kv.Value.LoadSlice(kv.Value.BitsLeft())
		if err != nil {
			return Allowlist{}, fmt.Errorf("registry: allowlist value: %w", err)
		}
		e := Entry{Kind: Kind(kind), Value: value}
		if err := e.Kind.checkValue(value); err != nil {
			return Allowlist{}, err
		}
		if h := sha256.Sum256(value); !bytes.Equal(h[:], hash) {
			return Allowlist{}, fmt.Errorf("registry: allowlist: %s %x under another value's key", e.Kind, value)
		}
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

// Measurements are a host's measured values by kind, as a client takes them
// from evidence it has verified: the data of the event log's host-binary,
// abi-version, sandbox-policy and model events, and the quote's MRTD and
// RTMR0-2. A kind left out counts as not measured.
type Measurements map[Kind][]byte

// ErrNotAllowed is returned (wrapped, naming the kind and value) by
// Allowlist.Check for a host whose measurements the allowlist does not accept.
var ErrNotAllowed = errors.New("registry: measurement not on the allowlist")

// Check returns nil if the allowlist accepts m: for each of host-binary,
// abi-version, sandbox-policy and model, m's value is one of the allowlist's
// entries of that kind (so a kind without entries accepts nothing); for each
// of MRTD and RTMR0-2 that has entries, m's value is one of them. Otherwise
// it returns ErrNotAllowed naming the first kind that fails.
func (a Allowlist) Check(m Measurements) error {
	for k := KindHostBinary; k <= KindRTMR2; k++ {
		var listed bool
		var found bool
		for _, e := range a.Entries {
			if e.Kind != k {
				continue
			}
			listed = true
			if v, ok := m[k]; ok && bytes.Equal(v, e.Value) {
				found = true
				break
			}
		}
		if found || (!listed && !slices.Contains(requiredKinds, k)) {
			continue
		}
		v, ok := m[k]
		if !ok {
			return fmt.Errorf("%w: %s not measured", ErrNotAllowed, k)
		}
		return fmt.Errorf("%w: %s %x", ErrNotAllowed, k, v)
	}
	return nil
}
