package nvidia

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// fuzzSeeds adds NVIDIA's sample files, when present, and a simulated GPU's output.
func fuzzSeeds(f *testing.F, sample func(sample) [][]byte, sim func(*Sim, Evidence) [][]byte) {
	if _, err := os.Stat(vectorsDir); err == nil {
		for _, b := range sample(loadSample(f)) {
			f.Add(b)
		}
	}
	s := newSim(f)
	ev := simEvidence(f, s, [32]byte{1})
	for _, b := range sim(s, ev) {
		f.Add(b)
	}
}

// FuzzParseReport feeds arbitrary bytes to ParseReport, which reads what a host (or
// whoever sits between it and the verifier) serves: it must not panic, must refuse with
// ErrReport, and what it accepts must be a signed exchange whose nonce is the request's.
func FuzzParseReport(f *testing.F) {
	fuzzSeeds(f, func(s sample) [][]byte { return [][]byte{s.ev.Report, s.ev.Report[:200]} },
		func(_ *Sim, ev Evidence) [][]byte { return [][]byte{ev.Report} })
	f.Add([]byte{0x11, 0xe0, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := ParseReport(b)
		if err != nil {
			if !errors.Is(err, ErrReport) {
				t.Fatalf("refused without ErrReport: %v", err)
			}
			return
		}
		if len(b) < requestLen+responseHeaderLen+32+2+SignatureLen || !bytes.Equal(rep.Nonce[:], b[4:36]) {
			t.Fatalf("accepted %d bytes, nonce %x", len(b), rep.Nonce)
		}
	})
}

// FuzzParseRIM feeds arbitrary documents to ParseRIM, which reads RIM files from a
// cache or NVIDIA's service: it must not panic and must refuse with one of its errors.
// Mutations of a signed RIM exercise the parser and canonicalization; none may verify
// unless canonically equal to the original.
func FuzzParseRIM(f *testing.F) {
	fuzzSeeds(f, func(s sample) [][]byte { return [][]byte{s.vbiosRIM, s.driverRIM} },
		func(s *Sim, _ Evidence) [][]byte { d, v := s.RIMs(); return [][]byte{d, v} })
	f.Add([]byte(`<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd"/>`))
	opts := RIMOptions{Now: sampleTime}
	f.Fuzz(func(t *testing.T, b []byte) {
		rim, err := ParseRIM(b, opts)
		if err != nil {
			for _, want := range []error{ErrRIM, ErrRIMSignature, ErrCertChain, ErrUntrustedRoot} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("refused without one of ParseRIM's errors: %v", err)
		}
		if len(rim.Signer) == 0 || rim.Version == "" {
			t.Fatalf("accepted a RIM without signer or version: %+v", rim)
		}
	})
}

// FuzzCanonicalXML checks canonicalize's defining property on arbitrary documents that
// the RIM reader accepts: canonical XML is a fixed point (read back, it canonicalizes to
// itself), so no two renderings of a tree's content can both be taken as its form.
func FuzzCanonicalXML(f *testing.F) {
	for _, seed := range []string{
		`<a xmlns="urn:a" xmlns:p="urn:p" p:z="1" b="&lt;&amp;&quot;&#9;&#10;&#13;">t&gt;&#13;<p:b xmlns="" c='2'/><![CDATA[x<y]]></a>`,
		`<a><b xmlns:q="urn:q"><q:c xmlns:q="urn:q2" q:d=""/></b><!-- c --></a>`,
		`<r xml:lang="en"><s xmlns:x="urn:x" x:a="1" a="2"/></r>`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > MaxRIMSize {
			return
		}
		doc, _, err := parseXMLForTest(s)
		if err != nil || doc.Root() == nil {
			return
		}
		first := canonicalize(doc.Root(), nil)
		again, _, err := parseXMLForTest(string(first))
		if err != nil {
			t.Fatalf("canonical form does not read back: %v\n%s", err, first)
		}
		if second := canonicalize(again.Root(), nil); !bytes.Equal(first, second) {
			t.Fatalf("canonical form is not a fixed point:\n%s\n%s", first, second)
		}
	})
}

// TestNVIDIARIMComment: a comment added to a signed RIM leaves it verifying, and reads
// the same: canonical XML drops comments, the one change to the file that must not
// matter (and cannot change what a RIM says, which is in attributes).
func TestNVIDIARIMComment(t *testing.T) {
	s := loadSample(t)
	opts := RIMOptions{Now: sampleTime}
	want, err := ParseRIM(s.vbiosRIM, opts)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(s.vbiosRIM), "<ns0:Payload", "<!-- a comment --><ns0:Payload", 1)
	got, err := ParseRIM([]byte(doc), opts)
	if err != nil {
		t.Fatalf("a comment added: %v", err)
	}
	if !reflect.DeepEqual(got.Measurements, want.Measurements) || got.Version != want.Version {
		t.Fatal("a comment changed what the RIM says")
	}
}
