package attest

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// Offsets in a v4 quote: header 48 bytes, then the TD report (REPORTDATA last, RTMR3
// before it), the 4-byte signed-data size, the 64-byte signature, the 64-byte
// attestation key, the certification data's 6-byte header, then the QE report.
const (
	offReportData  = 48 + 520
	offRTMR3       = 48 + 328 + 3*48
	offSignature   = 48 + 584 + 4
	offQEReport    = offSignature + 64 + 64 + 6
	offQEMREnclave = offQEReport + 0x40
	offQESignature = offQEReport + 0x180
)

// intelSampleTime is when the certificates of go-tdx-guest's sample quote were valid.
var intelSampleTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

func newTestSim(t testing.TB) (*Sim, *x509.CertPool) {
	t.Helper()
	s, err := NewSim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.Root())
	return s, pool
}

func simQuote(t testing.TB, s *Sim, rd [64]byte) []byte {
	t.Helper()
	q, err := s.Quote(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestSimQuoteVerifiesWithSimRootOnly(t *testing.T) {
	s, simRoots := newTestSim(t)
	l := NewLog(s.RTMR3())
	for _, e := range bootEvents() {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	rd := [64]byte{1, 2, 3}
	raw := simQuote(t, s, rd)

	q, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: simRoots})
	if err != nil {
		t.Fatalf("VerifyQuote with the sim root trusted: %v", err)
	}
	if !q.Simulated || q.ReportData != rd || q.MRTD != SimMRTD || q.RTMRs[0] != SimRTMR0 || q.RTMRs[2] != SimRTMR2 {
		t.Fatalf("fields = %+v", q)
	}
	if err := VerifyLog(l.Events(), q.RTMRs[3]); err != nil {
		t.Fatalf("the sim quote's RTMR3 does not replay the log: %v", err)
	}

	_, err = VerifyQuote(raw, VerifyOptions{})
	if !errors.Is(err, ErrUntrustedRoot) || !strings.Contains(err.Error(), "simulated evidence") {
		t.Fatalf("VerifyQuote with Intel's root = %v, want ErrUntrustedRoot naming simulated evidence", err)
	}
	_, otherRoots := newTestSim(t)
	if _, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: otherRoots}); !errors.Is(err, ErrUntrustedRoot) {
		t.Fatalf("VerifyQuote with another sim's root = %v, want ErrUntrustedRoot", err)
	}
}

func TestIntelSampleQuoteVerifiesOffline(t *testing.T) {
	q, err := VerifyQuote(testdata.RawQuote, VerifyOptions{Now: intelSampleTime})
	if err != nil {
		t.Fatalf("VerifyQuote(Intel sample): %v", err)
	}
	if q.Simulated {
		t.Fatal("Intel's sample reported as simulated")
	}
	_, simRoots := newTestSim(t)
	if _, err := VerifyQuote(testdata.RawQuote, VerifyOptions{TrustedRoots: simRoots, Now: intelSampleTime}); !errors.Is(err, ErrUntrustedRoot) {
		t.Fatalf("Intel sample with only a sim root trusted = %v, want ErrUntrustedRoot", err)
	}
	// The TD fields a policy pins are read from where go-tdx-guest reads them.
	parsed, err := abi.QuoteToProto(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	body := parsed.(*pb.QuoteV4).GetTdQuoteBody()
	for name, f := range map[string][2][]byte{
		"TD attributes": {q.TDAttributes[:], body.GetTdAttributes()}, "XFAM": {q.XFAM[:], body.GetXfam()},
		"MRSEAM": {q.MRSEAM[:], body.GetMrSeam()}, "MROWNER": {q.MROwner[:], body.GetMrOwner()},
		"MRCONFIGID": {q.MRConfigID[:], body.GetMrConfigId()}, "MROWNERCONFIG": {q.MROwnerConfig[:], body.GetMrOwnerConfig()},
	} {
		if !bytes.Equal(f[0], f[1]) {
			t.Errorf("%s %x, go-tdx-guest reads %x", name, f[0], f[1])
		}
	}
	flipped := bytes.Clone(testdata.RawQuote)
	flipped[offReportData] ^= 1
	if _, err := VerifyQuote(flipped, VerifyOptions{Now: intelSampleTime}); !errors.Is(err, ErrQuoteSignature) {
		t.Fatalf("Intel sample with REPORTDATA flipped = %v, want ErrQuoteSignature", err)
	}
}

// A debug TD's quote says so, and the attribute is covered by the quote's signature.
func TestDebugQuote(t *testing.T) {
	s, roots := newTestSim(t)
	s.tdAttributes[0] |= TDAttributeDebug
	raw := simQuote(t, s, [64]byte{})
	q, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	if !q.Debug() || q.TDAttributes != [8]byte{1} {
		t.Fatalf("debug quote: Debug() %t, attributes %x", q.Debug(), q.TDAttributes)
	}
	// The DEBUG bit sits first in the TD report, after the 48-byte header, TEE_TCB_SVN,
	// MRSEAM, MRSIGNERSEAM and SEAMATTRIBUTES: clearing it breaks the signature.
	const offTDAttributes = 48 + 16 + 48 + 48 + 8
	if raw[offTDAttributes] != TDAttributeDebug {
		t.Fatalf("byte %d of the quote is %#x, not the attributes' first", offTDAttributes, raw[offTDAttributes])
	}
	cleared := bytes.Clone(raw)
	cleared[offTDAttributes] &^= TDAttributeDebug
	if _, err := VerifyQuote(cleared, VerifyOptions{TrustedRoots: roots}); !errors.Is(err, ErrQuoteSignature) {
		t.Fatalf("debug bit cleared in the quote bytes: %v, want ErrQuoteSignature", err)
	}
}

func TestVerifyQuoteTamper(t *testing.T) {
	s, roots := newTestSim(t)
	raw := simQuote(t, s, [64]byte{7})
	flip := func(off int) []byte {
		b := bytes.Clone(raw)
		b[off] ^= 0x80
		return b
	}
	garbage := bytes.Repeat([]byte{0xab}, len(raw))
	wrongTEE := bytes.Clone(raw)
	wrongTEE[4] = 0 // an SGX quote's TEE type
	tests := []struct {
		name string
		raw  []byte
		now  time.Time
		want error
	}{
		{"REPORTDATA flipped", flip(offReportData), time.Time{}, ErrQuoteSignature},
		{"RTMR3 flipped", flip(offRTMR3), time.Time{}, ErrQuoteSignature},
		{"signature flipped", flip(offSignature + 5), time.Time{}, ErrQuoteSignature},
		{"QE report flipped", flip(offQEMREnclave), time.Time{}, ErrQEReport},
		{"QE report signature flipped", flip(offQESignature + 5), time.Time{}, ErrQEReport},
		{"truncated chain", raw[:len(raw)-10], time.Time{}, ErrQuoteTruncated},
		{"truncated to the header", raw[:100], time.Time{}, ErrQuoteTruncated},
		{"empty", nil, time.Time{}, ErrQuoteTruncated},
		{"garbage", garbage, time.Time{}, ErrQuoteFormat},
		{"not TDX", wrongTEE, time.Time{}, ErrQuoteFormat},
		{"certificates expired", raw, time.Now().AddDate(2, 0, 0), ErrCertChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyQuote(tt.raw, VerifyOptions{TrustedRoots: roots, Now: tt.now})
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyQuote = %v, want %v", err, tt.want)
			}
			t.Log(err)
		})
	}
	// The untampered quote passes with the same options, so each failure above is the
	// tampering's.
	if _, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: roots}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyQuoteMalformedChain(t *testing.T) {
	s, roots := newTestSim(t)
	raw := simQuote(t, s, [64]byte{})
	// Replace the PEM header of the first certificate of the chain, keeping sizes.
	i := bytes.Index(raw, []byte("-----BEGIN CERTIFICATE-----"))
	b := bytes.Clone(raw)
	copy(b[i:], "-----BEGIN CERTIFICATX-----")
	if _, err := VerifyQuote(b, VerifyOptions{TrustedRoots: roots}); !errors.Is(err, ErrCertChain) {
		t.Fatalf("VerifyQuote = %v, want ErrCertChain", err)
	}
}

func TestNewSimPersistsRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "attest")
	a, err := NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Root().Equal(b.Root()) {
		t.Fatal("second NewSim did not load the persisted root")
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, SimRootFile))
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := ParseCertificatePEM(pemBytes)
	if err != nil || !fromFile.Equal(a.Root()) {
		t.Fatalf("%s does not hold the root: %v", SimRootFile, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, simRootKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v, %v", fi, err)
	}
	// A quote of the second instance verifies against the file's root.
	pool := x509.NewCertPool()
	pool.AddCert(fromFile)
	if _, err := VerifyQuote(simQuote(t, b, [64]byte{}), VerifyOptions{TrustedRoots: pool}); err != nil {
		t.Fatal(err)
	}

	// A key without its certificate, or a key of another root, is refused.
	if err := os.Remove(filepath.Join(dir, SimRootFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSim(dir); err == nil {
		t.Fatal("NewSim replaced a root key whose certificate is missing")
	}
	other := t.TempDir()
	if _, err := NewSim(other); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SimRootFile), pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, simRootKeyFile))
	if err := os.WriteFile(filepath.Join(dir, simRootKeyFile), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSim(dir); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("NewSim with a mismatched key = %v", err)
	}
}

func TestSimQuoteHonoursContext(t *testing.T) {
	s, _ := newTestSim(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Quote(ctx, [64]byte{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Quote = %v, want context.Canceled", err)
	}
}

func TestSimMeasurements(t *testing.T) {
	// The documented derivation, spelled out.
	if SimMRTD != sha512.Sum384([]byte("cocoon-host tdx simulator v1/MRTD")) ||
		SimRTMR1 != sha512.Sum384([]byte("cocoon-host tdx simulator v1/RTMR1")) {
		t.Fatal("simulator measurements do not follow their documented derivation")
	}
	if SimRTMR0 == SimRTMR1 || SimRTMR1 == SimRTMR2 {
		t.Fatal("simulator registers share a value")
	}
}

func FuzzParseQuote(f *testing.F) {
	s, roots := newTestSim(f)
	f.Add(simQuote(f, s, [64]byte{}))
	f.Add(bytes.Clone(testdata.RawQuote))
	f.Add([]byte{4, 0, 2, 0, 0x81, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := ParseQuote(raw)
		if err != nil {
			for _, want := range []error{ErrQuoteFormat, ErrQuoteTruncated, ErrQuoteMalformed} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("ParseQuote error without a reason: %v", err)
		}
		v, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: roots})
		if err == nil && (v.ReportData != q.ReportData || v.RTMRs != q.RTMRs || v.MRTD != q.MRTD) {
			t.Fatal("VerifyQuote and ParseQuote disagree on the fields")
		}
	})
}

func BenchmarkVerifyQuote(b *testing.B) {
	s, roots := newTestSim(b)
	raw := simQuote(b, s, [64]byte{})
	for b.Loop() {
		if _, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: roots}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSimQuote(b *testing.B) {
	s, _ := newTestSim(b)
	for b.Loop() {
		if _, err := s.Quote(context.Background(), [64]byte{}); err != nil {
			b.Fatal(err)
		}
	}
}
