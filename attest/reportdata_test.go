package attest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"testing"
)

// Fixed inputs of the golden vectors.
var (
	goldenHostKey = ed25519.PublicKey(seq(0, 32))
	// An ed25519 SubjectPublicKeyInfo: its DER prefix, then the 32-byte key.
	goldenSPKI     = append(mustHex("302a300506032b6570032100"), seq(32, 32)...)
	goldenLog      = [48]byte(bytes.Repeat([]byte{0xaa}, 48))
	goldenNonce    = seq(0, 16)
	goldenManifest = [32]byte(bytes.Repeat([]byte{0x55}, 32))
)

func seq(start, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(start + i)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// The expected values were computed independently (Python hashlib) from the encoding
// documented on BootReportData, FreshBootReportData and PipelineReportData.
func TestReportDataGolden(t *testing.T) {
	boot, err := BootReportData(goldenHostKey, goldenSPKI, goldenLog)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(boot[:]), "df526194de9772a5c23d2f1cdb89f4dcdee9b9140407bcbbd7b2187d8442d6e147f97c9953d671164d1e5810a36f5fc514eeebff3017265c8f4bdf1b8a12026f"; got != want {
		t.Errorf("BootReportData = %s, want %s", got, want)
	}
	fresh, err := FreshBootReportData(goldenNonce, goldenHostKey, goldenSPKI, goldenLog)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(fresh[:]), "355fe04a0f65a2b5cfa0f417a3640561ffd7ed3622c4a6eee6326bc46eefbce9b1b2ce748b999fd9e1506050915dc42b339b62deaa1f4b95eafa820ccd2b3792"; got != want {
		t.Errorf("FreshBootReportData = %s, want %s", got, want)
	}
	pipe, err := PipelineReportData(goldenNonce, goldenManifest, goldenHostKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(pipe[:]), "e23412d5dc023576821241381c569baa25aa2f5e0b3fa6ea6f60247a074107857100b510f5277e0f9e5db2607da463d329716bb37f82bae88cd96495ffe16007"; got != want {
		t.Errorf("PipelineReportData = %s, want %s", got, want)
	}
}

// Every input is bound: changing any one changes the result.
func TestReportDataBindsEachInput(t *testing.T) {
	otherKey := ed25519.PublicKey(seq(1, 32))
	otherSPKI := append(mustHex("302a300506032b6570032100"), seq(33, 32)...)
	base, _ := BootReportData(goldenHostKey, goldenSPKI, goldenLog)
	for name, f := range map[string]func() ([64]byte, error){
		"host key": func() ([64]byte, error) { return BootReportData(otherKey, goldenSPKI, goldenLog) },
		"tls key":  func() ([64]byte, error) { return BootReportData(goldenHostKey, otherSPKI, goldenLog) },
		"log":      func() ([64]byte, error) { return BootReportData(goldenHostKey, goldenSPKI, [48]byte{}) },
	} {
		if got, err := f(); err != nil || got == base {
			t.Errorf("boot: changing the %s left REPORTDATA unchanged (err %v)", name, err)
		}
	}
	fbase, _ := FreshBootReportData(goldenNonce, goldenHostKey, goldenSPKI, goldenLog)
	if fbase == base {
		t.Error("fresh boot evidence binds the same REPORTDATA as boot evidence")
	}
	for name, f := range map[string]func() ([64]byte, error){
		"nonce":    func() ([64]byte, error) { return FreshBootReportData(seq(1, 16), goldenHostKey, goldenSPKI, goldenLog) },
		"host key": func() ([64]byte, error) { return FreshBootReportData(goldenNonce, otherKey, goldenSPKI, goldenLog) },
		"tls key":  func() ([64]byte, error) { return FreshBootReportData(goldenNonce, goldenHostKey, otherSPKI, goldenLog) },
		"log": func() ([64]byte, error) {
			return FreshBootReportData(goldenNonce, goldenHostKey, goldenSPKI, [48]byte{})
		},
	} {
		if got, err := f(); err != nil || got == fbase {
			t.Errorf("fresh boot: changing the %s left REPORTDATA unchanged (err %v)", name, err)
		}
	}
	pbase, _ := PipelineReportData(goldenNonce, goldenManifest, goldenHostKey)
	for name, f := range map[string]func() ([64]byte, error){
		"nonce":    func() ([64]byte, error) { return PipelineReportData(seq(1, 16), goldenManifest, goldenHostKey) },
		"manifest": func() ([64]byte, error) { return PipelineReportData(goldenNonce, [32]byte{}, goldenHostKey) },
		"host key": func() ([64]byte, error) { return PipelineReportData(goldenNonce, goldenManifest, otherKey) },
	} {
		if got, err := f(); err != nil || got == pbase {
			t.Errorf("pipeline: changing the %s left REPORTDATA unchanged (err %v)", name, err)
		}
	}
}

func TestReportDataRefuses(t *testing.T) {
	tests := []struct {
		name string
		f    func() ([64]byte, error)
	}{
		{"short host key", func() ([64]byte, error) { return BootReportData(goldenHostKey[:31], goldenSPKI, goldenLog) }},
		{"tls key not SPKI", func() ([64]byte, error) { return BootReportData(goldenHostKey, seq(0, 44), goldenLog) }},
		{"empty tls key", func() ([64]byte, error) { return BootReportData(goldenHostKey, nil, goldenLog) }},
		{"short nonce", func() ([64]byte, error) {
			return PipelineReportData(seq(0, MinNonceBytes-1), goldenManifest, goldenHostKey)
		}},
		{"long nonce", func() ([64]byte, error) {
			return PipelineReportData(seq(0, MaxNonceBytes+1), goldenManifest, goldenHostKey)
		}},
		{"pipeline host key", func() ([64]byte, error) { return PipelineReportData(goldenNonce, goldenManifest, nil) }},
		{"fresh boot short nonce", func() ([64]byte, error) {
			return FreshBootReportData(seq(0, MinNonceBytes-1), goldenHostKey, goldenSPKI, goldenLog)
		}},
		{"fresh boot no nonce", func() ([64]byte, error) { return FreshBootReportData(nil, goldenHostKey, goldenSPKI, goldenLog) }},
		{"fresh boot tls key not SPKI", func() ([64]byte, error) {
			return FreshBootReportData(goldenNonce, goldenHostKey, seq(0, 44), goldenLog)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.f(); !errors.Is(err, ErrReportDataInput) {
				t.Fatalf("err = %v, want ErrReportDataInput", err)
			}
		})
	}
}
