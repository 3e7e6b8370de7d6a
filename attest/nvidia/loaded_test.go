package nvidia

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// loadSimRIMs verifies s's two RIMs once, under opts.RIMRoots, as a verifier does when
// it loads them.
func loadSimRIMs(t testing.TB, s *Sim, opts VerifyOptions) (driver, vbios *RIM) {
	t.Helper()
	driverXML, vbiosXML := s.RIMs()
	ropts := RIMOptions{Roots: opts.RIMRoots}.SharingSigners()
	driver, err := ParseRIM(driverXML, ropts)
	if err == nil {
		vbios, err = ParseRIM(vbiosXML, ropts)
	}
	if err != nil {
		t.Fatal(err)
	}
	return driver, vbios
}

// TestNVIDIALoadedRIMs: RIMs verified when loaded give the lines the RIM files give, and
// a RIM that ParseRIM did not make for these roots and this time is refused, however
// well it matches the report: a RIM built by hand (the measurements an attacker wants
// to pass), a copy of a verified RIM changed afterwards, a RIM verified under another
// simulator's roots, and one whose signing chain is not valid at the verification time.
func TestNVIDIALoadedRIMs(t *testing.T) {
	s := newSim(t)
	other := newSim(t)
	nonce := [32]byte{4}
	ev := simEvidence(t, s, nonce)
	files := simOptions(t, s)
	_, want, err := Verify(ev, nonce, files)
	if err != nil {
		t.Fatal(err)
	}
	loaded := files
	loaded.DriverRIM, loaded.VBIOSRIM = nil, nil
	loaded.LoadedDriverRIM, loaded.LoadedVBIOSRIM = loadSimRIMs(t, s, files)
	_, got, err := Verify(ev, nonce, loaded)
	if err != nil {
		t.Fatalf("%v\n%v", err, got)
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].OK != want[i].OK {
			t.Fatalf("line %d: loaded %+v, files %+v", i, got[i], want[i])
		}
	}
	if d := detail(got, CheckDriverRIM); !strings.HasSuffix(d, ", verified when loaded") {
		t.Errorf("driver RIM line: %s", d)
	}

	// A GPU whose firmware measures otherwise, and RIMs that would let it pass.
	drifted := *s
	drifted.measurementsByIndex = slices.Clone(s.measurementsByIndex)
	drifted.measurementsByIndex[20] = SimMeasurement(1000)
	driftedEv := simEvidence(t, &drifted, nonce)
	copied := *loaded.LoadedDriverRIM
	copied.Measurements = maps.Clone(copied.Measurements)
	m := copied.Measurements[20]
	m.Alternatives = [][]byte{SimMeasurement(1000)}
	copied.Measurements[20] = m
	handMade := &RIM{TagID: copied.TagID, Name: copied.Name, Version: copied.Version, Measurements: copied.Measurements,
		Signer: copied.Signer}
	otherOpts := simOptions(t, other)
	otherDriver, _ := loadSimRIMs(t, other, otherOpts)
	for _, tc := range []struct {
		name    string
		change  func(*VerifyOptions)
		wantErr error
	}{
		{"a RIM built by hand", func(o *VerifyOptions) { o.LoadedDriverRIM = handMade }, ErrRIM},
		{"a verified RIM copied and changed", func(o *VerifyOptions) { o.LoadedDriverRIM = &copied }, ErrRIM},
		{"a RIM verified under another simulator's roots", func(o *VerifyOptions) { o.LoadedDriverRIM = otherDriver }, ErrRIM},
		{"the same RIM roots, another pool", func(o *VerifyOptions) { o.RIMRoots = simOptions(t, s).RIMRoots }, ErrRIM},
		{"two years on", func(o *VerifyOptions) { o.Now = time.Now().AddDate(2, 0, 0) }, ErrCertChain},
		{"before the signer was issued", func(o *VerifyOptions) { o.Now = time.Now().AddDate(-1, 0, 0) }, ErrCertChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := loaded
			tc.change(&opts)
			_, checks, err := Verify(driftedEv, nonce, opts)
			if !errors.Is(err, tc.wantErr) || ok(checks, CheckDriverRIM) || ok(checks, CheckMeasurements) {
				t.Fatalf("error %v, want %v on %s\n%v", err, tc.wantErr, CheckDriverRIM, checks)
			}
		})
	}
	// The drifted GPU against the genuine loaded RIMs fails on its measurement.
	_, checks, err := Verify(driftedEv, nonce, loaded)
	if !errors.Is(err, ErrMeasurement) || !ok(checks, CheckDriverRIM) {
		t.Fatalf("drifted GPU: %v\n%v", err, checks)
	}
}
