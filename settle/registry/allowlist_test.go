package registry

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

func b32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
func b48(b byte) []byte { return bytes.Repeat([]byte{b}, 48) }

var model = []byte("sha256:" + strings.Repeat("ab", 32))

var base = []Entry{
	{KindHostBinary, b32(1)}, {KindHostBinary, b32(2)},
	{KindABIVersion, []byte{0, 0, 0, 1}},
	{KindSandboxPolicy, b32(3)},
	{KindModel, model},
}

var good = Measurements{KindHostBinary: b32(2), KindABIVersion: {0, 0, 0, 1}, KindSandboxPolicy: b32(3), KindModel: model,
	KindMRTD: b48(9), KindRTMR0: b48(10)}

func TestAllowlistCheck(t *testing.T) {
	with := func(m Measurements, k Kind, v []byte) Measurements {
		out := Measurements{}
		for kk, vv := range m {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	cases := []struct {
		name    string
		entries []Entry
		m       Measurements
		badKind string // "" for accepted
	}{
		{"all listed", base, good, ""},
		{"another host build", base, with(good, KindHostBinary, b32(7)), "host-binary"},
		{"another ABI", base, with(good, KindABIVersion, []byte{0, 0, 0, 2}), "abi-version"},
		{"another sandbox policy", base, with(good, KindSandboxPolicy, b32(8)), "sandbox-policy"},
		{"another model", base, with(good, KindModel, []byte("sha256:00")), "model"},
		{"model not measured", base, with(good, KindModel, nil), "model"},
		{"no model listed allows none", base[:4], good, "model"},
		{"empty allowlist allows nothing", nil, good, "host-binary"},
		{"MRTD unlisted: any", base, with(good, KindMRTD, b48(1)), ""},
		{"MRTD listed and matching", append(base[:5:5], Entry{KindMRTD, b48(9)}), good, ""},
		{"MRTD listed, another", append(base[:5:5], Entry{KindMRTD, b48(8)}), good, "mrtd"},
		{"MRTD listed, not measured", append(base[:5:5], Entry{KindMRTD, b48(9)}), with(good, KindMRTD, nil), "mrtd"},
		{"RTMR2 listed, another", append(base[:5:5], Entry{KindRTMR2, b48(1)}), with(good, KindRTMR2, b48(2)), "rtmr2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Through the cell and back: what a client checks is what the chain holds.
			a := roundTrip(t, Allowlist{Entries: c.entries})
			err := a.Check(c.m)
			if c.badKind == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), ": "+c.badKind+" ") {
				t.Fatalf("got %v, want ErrNotAllowed naming %s", err, c.badKind)
			}
		})
	}
}

func roundTrip(t *testing.T, a Allowlist) Allowlist {
	t.Helper()
	c, err := a.Cell()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseAllowlist(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Entries) != len(a.Entries) {
		t.Fatalf("%d entries back, want %d", len(back.Entries), len(a.Entries))
	}
	return back
}

func TestAllowlistCellRefuses(t *testing.T) {
	cases := []struct {
		name  string
		entry Entry
	}{
		{"unknown kind", Entry{Kind(9), b32(1)}},
		{"short host build", Entry{KindHostBinary, b32(1)[:31]}},
		{"long ABI version", Entry{KindABIVersion, []byte{0, 0, 0, 0, 1}}},
		{"empty model", Entry{KindModel, nil}},
		{"model too long for a leaf", Entry{KindModel, bytes.Repeat([]byte{'a'}, MaxEntryBytes+1)}},
		{"MRTD of 32 bytes", Entry{KindMRTD, b32(1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := (Allowlist{Entries: []Entry{c.entry}}).Cell(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := (Allowlist{Entries: []Entry{base[0], base[0]}}).Cell(); err == nil {
		t.Fatal("a duplicate accepted")
	}
	// The longest model fits.
	roundTrip(t, Allowlist{Entries: []Entry{{KindModel, bytes.Repeat([]byte{'a'}, MaxEntryBytes)}}})
}

// rawAllowlist builds a dictionary with any key and value, as an owner could
// propose: the contract does not look inside.
func rawAllowlist(t *testing.T, kind Kind, keyHash, value []byte, valueBits uint) *cell.Cell {
	t.Helper()
	d := cell.NewDict(allowlistKeyBits)
	key := cell.BeginCell().MustStoreUInt(uint64(kind), 8).MustStoreSlice(keyHash, 256).EndCell()
	if err := d.SetBuilder(key, cell.BeginCell().MustStoreSlice(value, valueBits)); err != nil {
		t.Fatal(err)
	}
	return d.AsCell()
}

func TestParseAllowlistRefusesMalformed(t *testing.T) {
	h := sha256.Sum256(b32(1))
	other := sha256.Sum256(b32(2))
	cases := []struct {
		name string
		c    *cell.Cell
	}{
		// A value under another value's key: a client looking the measured value
		// up by its hash would find it listed when it is not, or the reverse.
		{"key is not the value's hash", rawAllowlist(t, KindHostBinary, other[:], b32(1), 256)},
		{"unknown kind", rawAllowlist(t, Kind(0), h[:], b32(1), 256)},
		{"wrong size for its kind", rawAllowlist(t, KindMRTD, h[:], b32(1), 256)},
		{"not whole bytes", rawAllowlist(t, KindModel, h[:], []byte{0xff}, 7)},
		{"not a dictionary of this key size", cell.BeginCell().MustStoreUInt(0, 3).EndCell()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if a, err := ParseAllowlist(c.c); err == nil {
				t.Fatalf("accepted as %+v", a)
			}
		})
	}
	if _, err := ParseAllowlist(rawAllowlist(t, KindHostBinary, h[:], b32(1), 256)); err != nil {
		t.Fatalf("a well-formed entry: %v", err)
	}
}

// FuzzParseAllowlist feeds ParseAllowlist any bag of cells: what a get-method
// of a registry returns is the owner's bytes. It must not panic, and what it
// accepts must encode back to the same cell.
func FuzzParseAllowlist(f *testing.F) {
	c, err := (Allowlist{Entries: base}).Cell()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.ToBOC())
	f.Add(cell.BeginCell().EndCell().ToBOC())
	f.Fuzz(func(t *testing.T, boc []byte) {
		c, err := cell.FromBOC(boc)
		if err != nil {
			return
		}
		a, err := ParseAllowlist(c)
		if err != nil {
			return
		}
		again, err := a.Cell()
		if err != nil {
			t.Fatalf("parsed %+v does not encode: %v", a, err)
		}
		if again != nil && !bytes.Equal(again.Hash(), c.Hash()) {
			t.Fatalf("parsed %+v encodes to another cell", a)
		}
	})
}

// FuzzDecodeHosts feeds decodeHosts any bag of cells, as get_hosts of a
// contract at a given address may return: it must not panic.
func FuzzDecodeHosts(f *testing.F) {
	d := cell.NewDict(256)
	rec := cell.BeginCell().MustStoreUInt(1, 8).MustStoreAddr(address.NewAddress(0, 0, b32(4))).MustStoreCoins(5).MustStoreUInt(1, 32).MustStoreUInt(2, 32).MustStoreUInt(0, 32).
		MustStoreRef(cell.BeginCell().MustStoreSlice(b32(1), 256).MustStoreSlice(b32(2), 256).MustStoreRef(cell.BeginCell().MustStoreSlice([]byte("https://a"), 72).EndCell()).EndCell())
	if err := d.SetBuilder(cell.BeginCell().MustStoreSlice(b32(5), 256).EndCell(), rec); err != nil {
		f.Fatal(err)
	}
	f.Add(d.AsCell().ToBOC())
	f.Fuzz(func(t *testing.T, boc []byte) {
		c, err := cell.FromBOC(boc)
		if err != nil {
			return
		}
		hosts, err := decodeHosts(c)
		if err != nil {
			return
		}
		for _, h := range hosts {
			if len(h.Key) != 32 || h.Stake == nil || h.State < HostActive || h.State > HostWithdrawn {
				t.Fatalf("decoded %+v", h)
			}
		}
	})
}

// hostsCell is a get_hosts result with n active records.
func hostsCell(b *testing.B, n int) *cell.Cell {
	b.Helper()
	d := cell.NewDict(256)
	for i := range n {
		info := cell.BeginCell().MustStoreSlice(b32(1), 256).MustStoreSlice(b32(2), 256).
			MustStoreRef(cell.BeginCell().MustStoreSlice([]byte("https://host.example:8443"), 200).EndCell())
		rec := cell.BeginCell().MustStoreUInt(1, 8).MustStoreAddr(address.NewAddress(0, 0, b32(4))).MustStoreCoins(10e9).
			MustStoreUInt(1, 32).MustStoreUInt(2, 32).MustStoreUInt(0, 32).MustStoreRef(info.EndCell())
		key := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		if err := d.SetBuilder(cell.BeginCell().MustStoreSlice(key[:], 256).EndCell(), rec); err != nil {
			b.Fatal(err)
		}
	}
	return d.AsCell()
}

// BenchmarkDecodeHosts measures what a client's refresh of the market costs beyond the
// liteserver queries: decoding get_hosts for 1,000 hosts.
// go test -run XXX -bench 'DecodeHosts|AllowlistCheck' ./settle/registry/
func BenchmarkDecodeHosts(b *testing.B) {
	c := hostsCell(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if hosts, err := decodeHosts(c); err != nil || len(hosts) != 1000 {
			b.Fatal(len(hosts), err)
		}
	}
}

// BenchmarkAllowlistCheck measures one host's check against an allowlist of 64 entries
// per required kind, the check a client makes per host and refresh.
func BenchmarkAllowlistCheck(b *testing.B) {
	var a Allowlist
	for i := range 64 {
		a.Entries = append(a.Entries, Entry{KindHostBinary, b32(byte(i + 10))}, Entry{KindSandboxPolicy, b32(byte(i + 100))},
			Entry{KindModel, []byte("sha256:" + strings.Repeat(string(rune('a'+i%26)), 64))})
	}
	a.Entries = append(a.Entries, base...)
	for b.Loop() {
		if err := a.Check(good); err != nil {
			b.Fatal(err)
		}
	}
}
