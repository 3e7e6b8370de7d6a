package nvidia

import "testing"

// BenchmarkVerifyNVIDIA verifies NVIDIA's sample evidence with both RIMs, at a time
// when it verifies (see TestNVIDIASampleVerify): every check runs.
func BenchmarkVerifyNVIDIA(b *testing.B) {
	s := loadSample(b)
	opts := s.options()
	for b.Loop() {
		if _, checks, _ := Verify(s.ev, s.nonce, opts); len(checks) != 10 {
			b.Fatal(checks)
		}
	}
}

// BenchmarkVerifyNVIDIACached is BenchmarkVerifyNVIDIA with a Cache that has seen the
// chain and the RIMs: what a verifier pays per report of a GPU it verified before.
func BenchmarkVerifyNVIDIACached(b *testing.B) {
	s := loadSample(b)
	opts := s.options()
	opts.Cache = NewCache()
	Verify(s.ev, s.nonce, opts)
	for b.Loop() {
		if _, checks, _ := Verify(s.ev, s.nonce, opts); len(checks) != 10 {
			b.Fatal(checks)
		}
	}
}

// BenchmarkVerifyNVIDIAReportOnly is BenchmarkVerifyNVIDIA without RIMs: the chain, the
// report's signature, nonce and firmware ID.
func BenchmarkVerifyNVIDIAReportOnly(b *testing.B) {
	s := loadSample(b)
	opts := VerifyOptions{Now: sampleTime}
	for b.Loop() {
		Verify(s.ev, s.nonce, opts)
	}
}

// BenchmarkParseRIMNVIDIA parses and verifies NVIDIA's sample VBIOS RIM.
func BenchmarkParseRIMNVIDIA(b *testing.B) {
	s := loadSample(b)
	opts := RIMOptions{Now: sampleTime}
	for b.Loop() {
		if _, err := ParseRIM(s.vbiosRIM, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseReportNVIDIA parses NVIDIA's sample report.
func BenchmarkParseReportNVIDIA(b *testing.B) {
	s := loadSample(b)
	for b.Loop() {
		if _, err := ParseReport(s.ev.Report); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSimEvidenceNVIDIA is what a host with a simulated GPU pays per evidence
// request: building and signing a report (one P-384 signature).
func BenchmarkSimEvidenceNVIDIA(b *testing.B) {
	s := newSim(b)
	for b.Loop() {
		simEvidence(b, s, [32]byte{1})
	}
}
