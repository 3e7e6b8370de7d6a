package nvidia

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// vectorsDir holds NVIDIA's published test vectors (see its README), outside the
// repository.
const vectorsDir = "../../../shared/testvectors/nvidia-gpu/"

// sampleTime is when the sample verifies: its device chain is valid from 2022-03-01 (the
// provisioner ICA; the others from 2020-10-17, 2021-11-05, 2022-01-12) to 9999-12-31, but
// the "HCC RIM L4 Signer" that signed both sample RIMs only from 2023-06-27 to
// 2025-06-26 (its issuer, "NVIDIA Reference Value L3 GH100 001", from 2023-05-11 to
// 2026-11-11).
var sampleTime = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// sample is NVIDIA's sample Hopper evidence and the RIMs published with it.
type sample struct {
	ev                  Evidence
	driverRIM, vbiosRIM []byte
	prodVBIOSRIM        []byte
	nonce               [32]byte
}

// loadSample reads the test vectors, skipping the test when they are absent.
func loadSample(t testing.TB) sample {
	t.Helper()
	if _, err := os.Stat(vectorsDir); err != nil {
		t.Skipf("NVIDIA test vectors not found at %s (%v): they live outside the repository, see its README", vectorsDir, err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(vectorsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	report, err := hex.DecodeString(strings.TrimSpace(string(read("hopperAttestationReport.txt"))))
	if err != nil {
		t.Fatal(err)
	}
	s := sample{
		ev:           Evidence{Report: report, CertChain: read("hopperCertChain.txt")},
		driverRIM:    read("Driver_RIM_test_no_gpu.swidtag"),
		vbiosRIM:     read("1010_0200_882_96005E0001_test_no_gpu.swidtag"),
		prodVBIOSRIM: read("1010_0200_882_96005E0001_PROD.swidtag"),
	}
	hex.Decode(s.nonce[:], []byte("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"))
	return s
}

func (s sample) options() VerifyOptions {
	return VerifyOptions{Now: sampleTime, DriverRIM: s.driverRIM, VBIOSRIM: s.vbiosRIM}
}

// TestNVIDIASampleReport parses NVIDIA's sample report: the fields a verifier reads.
func TestNVIDIASampleReport(t *testing.T) {
	s := loadSample(t)
	rep, err := ParseReport(s.ev.Report)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Nonce != s.nonce || rep.SPDMVersion != 0x11 || rep.SlotID != 0 {
		t.Errorf("nonce %x, SPDM %#x, slot %d", rep.Nonce, rep.SPDMVersion, rep.SlotID)
	}
	if len(rep.Measurements) != 64 {
		t.Errorf("%d measurements, want 64", len(rep.Measurements))
	}
	for i, m := range rep.Measurements {
		if len(m) != 48 {
			t.Errorf("measurement %d: %d bytes", i, len(m))
		}
	}
	want := Report{DriverVersion: "550.90.07", VBIOSVersion: "96.00.9F.00.01", Project: "1010", ProjectSKU: "0200", ChipSKU: "882"}
	if rep.DriverVersion != want.DriverVersion || rep.VBIOSVersion != want.VBIOSVersion || rep.Project != want.Project ||
		rep.ProjectSKU != want.ProjectSKU || rep.ChipSKU != want.ChipSKU {
		t.Errorf("driver %q VBIOS %q project %q SKU %q chip %q, want %+v", rep.DriverVersion, rep.VBIOSVersion, rep.Project, rep.ProjectSKU, rep.ChipSKU, want)
	}
	if hex.EncodeToString(rep.FWID) != "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d" {
		t.Errorf("FWID %x", rep.FWID)
	}
	// A Hopper report of this age has no feature flag: no CC mode is signed.
	if rep.CCMode != "" {
		t.Errorf("CC mode %q, want none", rep.CCMode)
	}
}

// TestNVIDIASampleVerify states which checks NVIDIA's sample passes: its certificate
// chain (at sampleTime, and today too: valid to 9999), the report signature, the nonce
// of its request, the firmware ID against the device certificate, and both RIMs'
// signatures to NVIDIA's RIM root (at sampleTime only). It fails the versions and the
// measurements: the sample RIMs are for driver 545.00 and VBIOS 96.00.5E.00.01, the
// report is of driver 550.90.07 and VBIOS 96.00.9F.00.01 (NVIDIA's verifier passes it
// only in test mode, which tolerates failures); 12 of its 32 active measurements match.
func TestNVIDIASampleVerify(t *testing.T) {
	s := loadSample(t)
	id, checks, err := Verify(s.ev, s.nonce, s.options())
	want := map[string]bool{
		CheckFormat: true, CheckChain: true, CheckSignature: true, CheckNonce: true, CheckFWID: true,
		CheckDriverRIM: true, CheckVBIOSRIM: true,
		CheckDriverVersion: false, CheckVBIOSVersion: false, CheckMeasurements: false,
	}
	assertChecks(t, checks, want)
	if !errors.Is(err, ErrVersion) || !strings.HasPrefix(err.Error(), CheckDriverVersion) {
		t.Errorf("error %v, want the driver version's ErrVersion", err)
	}
	if m := detail(checks, CheckMeasurements); !strings.Contains(m, "20 of 32 active measurements differ") {
		t.Errorf("measurements: %s", m)
	}
	if id.Simulated || id.DriverVersion != "550.90.07" || id.VBIOSVersion != "96.00.9F.00.01" {
		t.Errorf("identity %+v", id)
	}

	// Today the chain and report still pass; the RIMs' signer has expired.
	_, checks, _ = Verify(s.ev, s.nonce, VerifyOptions{DriverRIM: s.driverRIM, VBIOSRIM: s.vbiosRIM})
	assertChecks(t, checks, map[string]bool{CheckChain: true, CheckSignature: true, CheckNonce: true, CheckFWID: true,
		CheckDriverRIM: false, CheckVBIOSRIM: false})
	if d := detail(checks, CheckDriverRIM); !strings.Contains(d, "expired") {
		t.Errorf("driver RIM today: %s, want an expired certificate", d)
	}
}

// TestNVIDIASampleRIMs parses the sample RIMs, and NVIDIA's production VBIOS RIM for the
// same board, under NVIDIA's RIM root: versions and the measurements they make active.
func TestNVIDIASampleRIMs(t *testing.T) {
	s := loadSample(t)
	for _, tc := range []struct {
		name    string
		xml     []byte
		version string
		active  []int
	}{
		{"driver", s.driverRIM, "545.00", append([]int{7}, span(21, 41)...)},
		{"VBIOS", s.vbiosRIM, "96.00.5E.00.01", slices.Concat(span(0, 7), span(8, 13))},
		{"production VBIOS", s.prodVBIOSRIM, "96.00.5E.00.01", slices.Concat(span(0, 7), span(8, 13))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rim, err := ParseRIM(tc.xml, RIMOptions{Now: sampleTime})
			if err != nil {
				t.Fatal(err)
			}
			if rim.Version != tc.version || rim.Name != "GH100" || len(rim.Measurements) != 64 {
				t.Errorf("version %q name %q, %d measurements", rim.Version, rim.Name, len(rim.Measurements))
			}
			var active []int
			for i, m := range rim.Measurements {
				if m.Active {
					active = append(active, i)
				}
			}
			slices.Sort(active)
			if !slices.Equal(active, tc.active) {
				t.Errorf("active %v, want %v", active, tc.active)
			}
			if got := rim.Signer[len(rim.Signer)-1].Subject.CommonName; got != "NVIDIA CoRIM signing Root CA" {
				t.Errorf("chain ends at %q", got)
			}
		})
	}
	vbios, _ := ParseRIM(s.vbiosRIM, RIMOptions{Now: sampleTime})
	if n := len(vbios.Measurements[12].Alternatives); n != 4 {
		t.Errorf("VBIOS measurement 12 has %d alternatives, want 4", n)
	}
}

// span is the integers from a up to b, excluded.
func span(a, b int) []int {
	var s []int
	for i := a; i < b; i++ {
		s = append(s, i)
	}
	return s
}

// TestNVIDIAEveryReportByteSigned changes each byte of the sample report in turn (the
// signed request and response, and the signature): every change must fail the report's
// format or its signature; none may leave the report verifying.
func TestNVIDIAEveryReportByteSigned(t *testing.T) {
	s := loadSample(t)
	// The cache spares verifying the unchanged chain 4117 times; the report's
	// signature is verified every time.
	opts := VerifyOptions{Now: sampleTime, Cache: NewCache()}
	for i := range s.ev.Report {
		b := bytes.Clone(s.ev.Report)
		b[i] ^= 0x01
		_, checks, err := Verify(Evidence{Report: b, CertChain: s.ev.CertChain}, s.nonce, opts)
		if err == nil || ok(checks, CheckSignature) {
			t.Fatalf("byte %d of %d changed, the report still verifies: %v", i, len(b), checks)
		}
		if !errors.Is(err, ErrReport) && !errors.Is(err, ErrSignature) {
			t.Fatalf("byte %d: %v, want ErrReport or ErrSignature", i, err)
		}
	}
}

// TestNVIDIASampleAttacks replays the sample in the ways an attacker would: another
// nonce (a replayed report), a chain to another root, a chain cut short, a chain
// that hides other bytes, a chain whose leaf is not the key that signed.
func TestNVIDIASampleAttacks(t *testing.T) {
	s := loadSample(t)
	sim := newSim(t)
	simDevice, _ := sim.Roots()
	simEvidence := simEvidence(t, sim, s.nonce)
	pems := splitPEM(s.ev.CertChain)
	for _, tc := range []struct {
		name    string
		ev      Evidence
		nonce   [32]byte
		opts    func(*VerifyOptions)
		failed  string
		wantErr error
	}{
		{name: "replayed for another nonce", nonce: [32]byte{1}, failed: CheckNonce, wantErr: ErrNonce},
		{name: "only the simulator's root trusted", opts: func(o *VerifyOptions) { o.DeviceRoots = pool(t, simDevice) },
			failed: CheckChain, wantErr: ErrUntrustedRoot},
		{name: "chain without its intermediates", ev: Evidence{CertChain: pems[0]}, failed: CheckChain, wantErr: ErrUntrustedRoot},
		{name: "text between the certificates",
			ev:     Evidence{CertChain: slices.Concat(pems[0], []byte("junk\n"), bytes.Join(pems[1:], nil))},
			failed: CheckFormat, wantErr: ErrCertChain},
		{name: "another device's leaf", ev: Evidence{CertChain: simEvidence.CertChain},
			opts: func(o *VerifyOptions) { o.Now = time.Now() }, failed: CheckChain, wantErr: ErrUntrustedRoot},
		{name: "empty chain", ev: Evidence{CertChain: []byte("\n")}, failed: CheckFormat, wantErr: ErrCertChain},
		{name: "truncated report", ev: Evidence{Report: s.ev.Report[:len(s.ev.Report)-1]}, failed: CheckFormat, wantErr: ErrReport},
		{name: "a byte appended", ev: Evidence{Report: append(bytes.Clone(s.ev.Report), 0)}, failed: CheckFormat, wantErr: ErrReport},
		{name: "no RIMs", opts: func(o *VerifyOptions) { o.DriverRIM, o.VBIOSRIM = nil, nil }, failed: CheckDriverRIM, wantErr: ErrRIM},
		{name: "RIMs swapped", opts: func(o *VerifyOptions) { o.DriverRIM, o.VBIOSRIM = o.VBIOSRIM, o.DriverRIM },
			failed: CheckDriverVersion, wantErr: ErrVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := s.ev
			if tc.ev.Report != nil {
				ev.Report = tc.ev.Report
			}
			if tc.ev.CertChain != nil {
				ev.CertChain = tc.ev.CertChain
			}
			nonce := s.nonce
			if tc.nonce != [32]byte{} {
				nonce = tc.nonce
			}
			opts := s.options()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, checks, err := Verify(ev, nonce, opts)
			if !errors.Is(err, tc.wantErr) || !strings.HasPrefix(err.Error(), tc.failed+":") {
				t.Fatalf("error %v, want %v from %s", err, tc.wantErr, tc.failed)
			}
			if ok(checks, tc.failed) {
				t.Fatalf("%s passed", tc.failed)
			}
		})
	}
}

// TestNVIDIARIMTampered changes the sample RIM's signed content, the kinds of change an
// attacker wants (a hash, whether a measurement counts, the version it is for) and
// every 13th byte of the document before the signature: each must be refused.
func TestNVIDIARIMTampered(t *testing.T) {
	s := loadSample(t)
	opts := RIMOptions{Now: sampleTime}
	doc := string(s.vbiosRIM)
	for _, tc := range []struct{ name, old, new string }{
		{"a hash", `index="4" active="True" alternatives="1" ns2:Hash0="568b89`, `index="4" active="True" alternatives="1" ns2:Hash0="568b88`},
		{"a measurement made inactive", `index="4" active="True"`, `index="4" active="False"`},
		{"the version", `colloquialVersion="96.00.5E.00.01"`, `colloquialVersion="96.00.9F.00.01"`},
		{"an attribute added", `<ns0:Meta `, `<ns0:Meta extra="1" `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(doc, tc.old) != 1 {
				t.Fatalf("%q is not once in the RIM", tc.old)
			}
			_, err := ParseRIM([]byte(strings.Replace(doc, tc.old, tc.new, 1)), opts)
			if !errors.Is(err, ErrRIMSignature) {
				t.Fatalf("error %v, want ErrRIMSignature", err)
			}
		})
	}
	signedEnd := strings.Index(doc, "<ds:Signature")
	for i := 0; i < signedEnd; i += 13 {
		b := []byte(doc)
		b[i] ^= 0x01
		if _, err := ParseRIM(b, opts); err == nil {
			t.Fatalf("byte %d changed (%q to %q), the RIM still verifies", i, doc[i], b[i])
		}
	}
	// The signature itself: its value, and its digest.
	for _, field := range []string{"<ds:SignatureValue>", "<ds:DigestValue>"} {
		i := strings.Index(doc, field) + len(field) + 3
		b := []byte(doc)
		b[i] ^= 0x01
		if _, err := ParseRIM(b, opts); !errors.Is(err, ErrRIMSignature) && !errors.Is(err, ErrRIM) {
			t.Errorf("%s changed: %v", field, err)
		}
	}
}

// TestNVIDIARIMRefused feeds RIMs shaped to make a verifier check one thing and use
// another: each is refused before any of its content is returned.
func TestNVIDIARIMRefused(t *testing.T) {
	s := loadSample(t)
	doc := string(s.vbiosRIM)
	sigStart, sigEnd := strings.Index(doc, "<ds:Signature"), strings.Index(doc, "</ds:Signature>")+len("</ds:Signature>")
	sig := doc[sigStart:sigEnd]
	sim := newSim(t)
	_, simRIM := sim.RIMs()
	for _, tc := range []struct {
		name string
		xml  string
		opts RIMOptions
		want error
	}{
		{name: "a DTD that adds a default attribute", want: ErrRIM,
			xml: `<!DOCTYPE SoftwareIdentity [<!ATTLIST Resource extra CDATA "1">]>` + doc},
		{name: "an attribute twice", want: ErrRIM,
			xml: strings.Replace(doc, `index="4" active="True"`, `index="4" active="True" active="False"`, 1)},
		{name: "an undeclared prefix", want: ErrRIM,
			xml: strings.Replace(doc, `<ns0:Meta `, `<ns0:Meta zz:x="1" `, 1)},
		{name: "a second signature", want: ErrRIM,
			xml: strings.Replace(doc, "</SoftwareIdentity>", sig+"</SoftwareIdentity>", 1)},
		{name: "the signature moved into the payload", want: ErrRIM,
			xml: strings.Replace(doc[:sigStart]+doc[sigEnd:], "</ns0:Payload>", sig+"</ns0:Payload>", 1)},
		{name: "no signature", want: ErrRIM, xml: doc[:sigStart] + doc[sigEnd:]},
		{name: "a reference to part of the document", want: ErrRIM,
			xml: strings.Replace(doc, `<ds:Reference URI="">`, `<ds:Reference URI="#payload">`, 1)},
		{name: "exclusive canonicalization", want: ErrRIM,
			xml: strings.Replace(doc, `<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>`,
				`<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>`, 1)},
		{name: "a processing instruction", want: ErrRIM, xml: strings.Replace(doc, "<ns0:Payload", "<?x y?><ns0:Payload", 1)},
		{name: "Latin-1", want: ErrRIM, xml: `<?xml version="1.0" encoding="ISO-8859-1"?>` + doc},
		{name: "not UTF-8", want: ErrRIM, xml: strings.Replace(doc, "NVIDIA Corporation", "NVIDIA \xff", 1)},
		{name: "too large", want: ErrRIM, xml: doc + strings.Repeat(" ", MaxRIMSize)},
		{name: "signed under another root", want: ErrUntrustedRoot, xml: string(simRIM), opts: RIMOptions{Now: time.Now()}},
		{name: "under NVIDIA's root, a signer expired", want: ErrCertChain, xml: doc, opts: RIMOptions{Now: time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)}},
		{name: "under NVIDIA's root, a signer not yet valid", want: ErrCertChain, xml: doc, opts: RIMOptions{Now: time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if opts.Now.IsZero() {
				opts.Now = sampleTime
			}
			rim, err := ParseRIM([]byte(tc.xml), opts)
			if !errors.Is(err, tc.want) || rim != nil {
				t.Fatalf("got %v (RIM %v), want %v", err, rim != nil, tc.want)
			}
		})
	}
}

// assertChecks checks the names and results of checks against want (names absent from
// want are not compared), and that every Check* name appears once, in order.
func assertChecks(t *testing.T, checks []Check, want map[string]bool) {
	t.Helper()
	order := []string{CheckFormat, CheckChain, CheckSignature, CheckNonce, CheckFWID, CheckDriverRIM, CheckVBIOSRIM,
		CheckDriverVersion, CheckVBIOSVersion, CheckMeasurements}
	if len(checks) != len(order) {
		t.Fatalf("%d checks, want %d: %v", len(checks), len(order), checks)
	}
	for i, c := range checks {
		if c.Name != order[i] {
			t.Errorf("check %d is %q, want %q", i, c.Name, order[i])
		}
		if w, ok := want[c.Name]; ok && c.OK != w {
			t.Errorf("%s: OK %v, want %v (%s)", c.Name, c.OK, w, c.Detail)
		}
	}
}

func ok(checks []Check, name string) bool {
	for _, c := range checks {
		if c.Name == name {
			return c.OK
		}
	}
	return false
}

func detail(checks []Check, name string) string {
	for _, c := range checks {
		if c.Name == name {
			return c.Detail
		}
	}
	return ""
}

// splitPEM splits a PEM chain into its certificates' PEM.
func splitPEM(b []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.SplitAfter(b, []byte("-----END CERTIFICATE-----\n")) {
		if len(bytes.TrimSpace(part)) > 0 {
			out = append(out, part)
		}
	}
	return out
}

// pool is a certificate pool of the PEM certificates given.
func pool(t testing.TB, pems ...[]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, b := range pems {
		if !p.AppendCertsFromPEM(b) {
			t.Fatal("not a PEM certificate")
		}
	}
	return p
}
