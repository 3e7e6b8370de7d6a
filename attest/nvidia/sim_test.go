package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// newSim is a simulated GPU with its roots in a fresh directory.
func newSim(t testing.TB) *Sim {
	t.Helper()
	s, err := NewSim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// simEvidence is s's evidence for nonce.
func simEvidence(t testing.TB, s *Sim, nonce [32]byte) Evidence {
	t.Helper()
	ev, err := s.Evidence(nonce)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// simOptions trusts s's roots and gives its RIMs.
func simOptions(t testing.TB, s *Sim) VerifyOptions {
	device, rim := s.Roots()
	driverRIM, vbiosRIM := s.RIMs()
	return VerifyOptions{DeviceRoots: pool(t, device), RIMRoots: pool(t, rim), DriverRIM: driverRIM, VBIOSRIM: vbiosRIM}
}

// TestNVIDIASimVerifies: the simulated GPU's evidence passes every check when its roots
// are trusted, and says it is simulated.
func TestNVIDIASimVerifies(t *testing.T) {
	s := newSim(t)
	nonce := [32]byte{1, 2, 3}
	ev := simEvidence(t, s, nonce)
	id, checks, err := Verify(ev, nonce, simOptions(t, s))
	if err != nil {
		t.Fatalf("%v\n%v", err, checks)
	}
	assertChecks(t, checks, map[string]bool{CheckFormat: true, CheckChain: true, CheckSignature: true, CheckNonce: true,
		CheckFWID: true, CheckDriverRIM: true, CheckVBIOSRIM: true, CheckDriverVersion: true, CheckVBIOSVersion: true, CheckMeasurements: true})
	if !id.Simulated || id.DriverVersion != SimDriverVersion || id.VBIOSVersion != SimVBIOSVersion || id.CCMode != CCModeSPT {
		t.Errorf("identity %+v", id)
	}
	if m := detail(checks, CheckMeasurements); m != "41 active measurements match the RIMs" {
		t.Errorf("measurements: %s", m)
	}
	fromHost, err := IdentityOf(ev)
	if err != nil || fromHost.ChainSHA256 != id.ChainSHA256 || fromHost.DriverVersion != id.DriverVersion {
		t.Errorf("IdentityOf %+v (%v), Verify %+v", fromHost, err, id)
	}
}

// TestNVIDIASimRefusedUnderNVIDIARoots: without its roots trusted, the simulated GPU's
// chain and RIMs are refused, each with ErrUntrustedRoot, and nothing after them runs.
func TestNVIDIASimRefusedUnderNVIDIARoots(t *testing.T) {
	s := newSim(t)
	ev := simEvidence(t, s, [32]byte{})
	opts := simOptions(t, s)
	opts.DeviceRoots, opts.RIMRoots = nil, nil
	id, checks, err := Verify(ev, [32]byte{}, opts)
	if !errors.Is(err, ErrUntrustedRoot) {
		t.Fatalf("error %v, want ErrUntrustedRoot", err)
	}
	assertChecks(t, checks, map[string]bool{CheckFormat: true, CheckChain: false, CheckSignature: false,
		CheckDriverRIM: false, CheckVBIOSRIM: false, CheckMeasurements: false})
	for _, name := range []string{CheckDriverRIM, CheckVBIOSRIM} {
		if d := detail(checks, name); !strings.Contains(d, ErrUntrustedRoot.Error()) {
			t.Errorf("%s: %s", name, d)
		}
	}
	if id.Simulated {
		t.Error("an unverified chain was judged")
	}
	// Trusting only one of the two roots is not enough either.
	device, _ := s.Roots()
	opts.DeviceRoots = pool(t, device)
	if _, checks, err = Verify(ev, [32]byte{}, opts); err == nil || !ok(checks, CheckSignature) || ok(checks, CheckDriverRIM) {
		t.Errorf("device root only: %v %v", err, checks)
	}
}

// TestNVIDIASimTampered: a simulated GPU's evidence changed after signing, or a GPU that
// measures something its RIMs do not list, fails on the check that names it.
func TestNVIDIASimTampered(t *testing.T) {
	s := newSim(t)
	other := newSim(t)
	nonce := [32]byte{9}
	ev := simEvidence(t, s, nonce)
	rep, err := ParseReport(ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	// The value of measurement 20 sits at its place in the report.
	at := bytes.Index(ev.Report, rep.Measurements[20])
	driverRIM, _ := s.RIMs()
	otherDriverRIM, otherVBIOSRIM := other.RIMs()
	otherEv := simEvidence(t, other, nonce)
	// A GPU whose firmware measures otherwise: the same sim, measurement 20 changed
	// before signing.
	drifted := *s
	drifted.measurementsByIndex = slices.Clone(s.measurementsByIndex)
	drifted.measurementsByIndex[20] = SimMeasurement(1000)
	driftedEv := simEvidence(t, &drifted, nonce)
	// A report whose firmware ID is not the one the device certificate names: the
	// same device key signing for other firmware.
	otherFirmware := *s
	otherFirmware.opaque = bytes.Replace(s.opaque, simFWID[:], SimMeasurement(2000), 1)
	otherFirmwareEv := simEvidence(t, &otherFirmware, nonce)
	for _, tc := range []struct {
		name    string
		change  func(*Evidence, *VerifyOptions)
		failed  string
		wantErr error
	}{
		{"a measurement changed after signing", func(e *Evidence, _ *VerifyOptions) { e.Report[at] ^= 1 }, CheckSignature, ErrSignature},
		{"the signature changed", func(e *Evidence, _ *VerifyOptions) { e.Report[len(e.Report)-1] ^= 1 }, CheckSignature, ErrSignature},
		{"another GPU's chain", func(e *Evidence, _ *VerifyOptions) { e.CertChain = otherEv.CertChain }, CheckChain, ErrUntrustedRoot},
		{"another GPU's report under this chain", func(e *Evidence, _ *VerifyOptions) { e.Report = otherEv.Report }, CheckSignature, ErrSignature},
		{"a RIM changed", func(_ *Evidence, o *VerifyOptions) {
			o.DriverRIM = bytes.Replace(driverRIM, []byte(`index="20" active="True"`), []byte(`index="20" active="False"`), 1)
		}, CheckDriverRIM, ErrRIMSignature},
		{"another simulator's RIM", func(_ *Evidence, o *VerifyOptions) { o.DriverRIM = otherDriverRIM }, CheckDriverRIM, ErrUntrustedRoot},
		// The driver RIM's signing chain verified first must not vouch for another one:
		// a call verifies each chain once, by its exact certificates.
		{"another simulator's VBIOS RIM after a good driver RIM", func(_ *Evidence, o *VerifyOptions) { o.VBIOSRIM = otherVBIOSRIM }, CheckVBIOSRIM, ErrUntrustedRoot},
		{"the firmware measures otherwise", func(e *Evidence, _ *VerifyOptions) { *e = driftedEv }, CheckMeasurements, ErrMeasurement},
		{"another firmware ID", func(e *Evidence, _ *VerifyOptions) { *e = otherFirmwareEv }, CheckFWID, ErrFWID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Evidence{Report: bytes.Clone(ev.Report), CertChain: bytes.Clone(ev.CertChain)}
			opts := simOptions(t, s)
			tc.change(&e, &opts)
			_, checks, err := Verify(e, nonce, opts)
			if !errors.Is(err, tc.wantErr) || !strings.HasPrefix(err.Error(), tc.failed+":") {
				t.Fatalf("error %v, want %v from %s", err, tc.wantErr, tc.failed)
			}
			if ok(checks, tc.failed) {
				t.Fatalf("%s passed", tc.failed)
			}
		})
	}
	_, checks, _ := Verify(driftedEv, nonce, simOptions(t, s))
	if d := detail(checks, CheckMeasurements); !strings.Contains(d, "1 of 41 active measurements differ, at indices [20]") {
		t.Errorf("measurements: %s", d)
	}
}

// TestNVIDIASimCache: a cached verification gives the same lines as a fresh one, and a
// chain or RIM remembered under the simulator's roots is not taken under NVIDIA's.
func TestNVIDIASimCache(t *testing.T) {
	s := newSim(t)
	ev := simEvidence(t, s, [32]byte{})
	opts := simOptions(t, s)
	_, fresh, err := Verify(ev, [32]byte{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Cache = NewCache()
	for range 2 {
		_, cached, err := Verify(ev, [32]byte{}, opts)
		if err != nil || !slices.Equal(cached, fresh) {
			t.Fatalf("cached: %v\n%v\nfresh:\n%v", err, cached, fresh)
		}
	}
	opts.DeviceRoots, opts.RIMRoots = nil, nil
	_, checks, err := Verify(ev, [32]byte{}, opts)
	if !errors.Is(err, ErrUntrustedRoot) || ok(checks, CheckChain) || ok(checks, CheckDriverRIM) || ok(checks, CheckVBIOSRIM) {
		t.Fatalf("under NVIDIA's roots with a warm cache: %v\n%v", err, checks)
	}
	// Outside the certificates' validity the cache does not answer.
	opts = simOptions(t, s)
	opts.Cache = NewCache()
	Verify(ev, [32]byte{}, opts)
	opts.Now = time.Now().AddDate(2, 0, 0)
	_, checks, err = Verify(ev, [32]byte{}, opts)
	if !errors.Is(err, ErrCertChain) || ok(checks, CheckChain) || ok(checks, CheckDriverRIM) {
		t.Fatalf("two years on, with a warm cache: %v\n%v", err, checks)
	}
}

// TestNVIDIASimRoots: the roots persist in the directory (0600 keys), a second NewSim
// uses them, and a directory with a root but not its key is refused.
func TestNVIDIASimRoots(t *testing.T) {
	dir := t.TempDir()
	a, err := NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	aDevice, aRIM := a.Roots()
	bDevice, bRIM := b.Roots()
	if !bytes.Equal(aDevice, bDevice) || !bytes.Equal(aRIM, bRIM) {
		t.Fatal("a second NewSim made new roots")
	}
	if file, _ := os.ReadFile(filepath.Join(dir, SimDeviceRootFile)); !bytes.Equal(file, aDevice) {
		t.Fatal("the device root file is not Roots' device root")
	}
	for _, key := range []string{simDeviceRootKeyFile, simRIMRootKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, key)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", key, fi.Mode(), err)
		}
	}
	// b's evidence verifies under a's roots: same roots, new device key.
	ev := simEvidence(t, b, [32]byte{})
	if _, _, err := Verify(ev, [32]byte{}, simOptions(t, a)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, simRIMRootKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSim(dir); err == nil {
		t.Fatal("a RIM root without its key was accepted")
	}
}

// TestNVIDIASimConcurrent: a Sim serves evidence to concurrent callers (run with -race).
func TestNVIDIASimConcurrent(t *testing.T) {
	s := newSim(t)
	opts := simOptions(t, s)
	opts.Cache = NewCache()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			nonce := [32]byte{byte(i)}
			ev, err := s.Evidence(nonce)
			if err == nil {
				_, _, err = Verify(ev, nonce, opts)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestNVIDIALookAlikeRoot: a root that copies the name of NVIDIA's device identity root,
// given as trusted, still makes the evidence simulated: only NVIDIA's key makes it
// NVIDIA's.
func TestNVIDIALookAlikeRoot(t *testing.T) {
	nvidia, err := parseChain(nvidiaDeviceRootPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: nvidia[0].Subject, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, SimDeviceRootFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, simDeviceRootKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	s, err := NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	ev := simEvidence(t, s, [32]byte{})
	id, checks, err := Verify(ev, [32]byte{}, simOptions(t, s))
	if err != nil {
		t.Fatalf("%v\n%v", err, checks)
	}
	if !id.Simulated || !strings.Contains(detail(checks, CheckChain), `chains to "NVIDIA Device Identity CA" (not NVIDIA's root`) {
		t.Fatalf("a look-alike of NVIDIA's root passed for NVIDIA's: %+v %s", id, detail(checks, CheckChain))
	}
}
