package nvidia

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestNVIDIAReportMalformed changes a simulated GPU's report (the same layout as
// NVIDIA's) in each way the parser must refuse, before any signature is looked at.
func TestNVIDIAReportMalformed(t *testing.T) {
	s := newSim(t)
	ev := simEvidence(t, s, [32]byte{7})
	good := ev.Report
	const response = requestLen                 // where the response starts
	const firstBlock = response + 8             // the first measurement block
	const secondBlock = firstBlock + 4 + 3 + 48 // Index, spec, size; type, size, value
	flagAt := len(good) - SignatureLen - 1      // the feature flag is the last opaque field
	for _, tc := range []struct {
		name   string
		change func([]byte) []byte
		want   string
	}{
		{"another SPDM version", set(0, 0x12), "request SPDM version"},
		{"not GET_MEASUREMENTS", set(1, 0xE1), "request code"},
		{"no signature asked for", set(2, 0x00), "not asked to sign"},
		{"not all measurements", set(3, 0x01), "not a request for all measurements"},
		{"response of another version", set(response, 0x10), "response SPDM version"},
		{"not MEASUREMENTS", set(response+1, 0x61), "response code"},
		{"a slot other than requested", set(response+3, 0x01), "response slot"},
		{"a block not in DMTF's format", set(firstBlock+1, 0x02), "not in DMTF's format"},
		{"a block index twice", set(secondBlock, 1), "index 1 repeats"},
		{"a block index 0", set(firstBlock, 0), "index 0"},
		{"a block longer than its value", set(firstBlock+2, 52), "after its value"},
		{"an unknown feature flag", set(flagAt, 9), "feature flag"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, "signature needs 96 bytes"},
		{"a byte after the signature", func(b []byte) []byte { return append(b, 0) }, "after the signature"},
		{"empty", func([]byte) []byte { return nil }, "request version needs"},
		{"over the size limit", func(b []byte) []byte { return append(b, make([]byte, MaxReportSize)...) }, "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ParseReport(tc.change(bytes.Clone(good)))
			if !errors.Is(err, ErrReport) || !strings.Contains(err.Error(), tc.want) || rep != nil {
				t.Fatalf("got %v, want ErrReport saying %q", err, tc.want)
			}
		})
	}
	if _, err := ParseReport(good); err != nil {
		t.Fatalf("the unchanged report: %v", err)
	}
}

// set returns a change that sets byte i to v.
func set(i int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[i] = v; return b }
}

// TestNVIDIAVBIOSVersion pins the VBIOS version's rendering to NVIDIA's RIM names.
func TestNVIDIAVBIOSVersion(t *testing.T) {
	for _, tc := range []struct {
		field []byte
		want  string
	}{
		{[]byte{0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0}, "96.00.9F.00.01"}, // the sample report's
		{[]byte{0x00, 0x5e, 0x00, 0x96, 0x01, 0, 0, 0}, "96.00.5E.00.01"}, // the sample RIM's
	} {
		if got := formatVBIOSVersion(tc.field); got != tc.want {
			t.Errorf("%x: %s, want %s", tc.field, got, tc.want)
		}
		if back, err := vbiosVersionField(tc.want); err != nil || !bytes.Equal(back, tc.field) {
			t.Errorf("%s: %x (%v), want %x", tc.want, back, err, tc.field)
		}
	}
}
