package nvidia

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Report is a parsed GET_MEASUREMENTS exchange. Its fields mean nothing until Verify
// has checked the signature over it.
type Report struct {
	// SPDMVersion is the SPDM version byte of request and response (0x11 for 1.1).
	SPDMVersion byte
	// Nonce is the requester's nonce in the GET_MEASUREMENTS request: the verifier's
	// freshness challenge, signed by the GPU with the rest of the exchange.
	Nonce [32]byte
	// ResponderNonce is the GPU's own nonce in the response.
	ResponderNonce [32]byte
	// SlotID is the certificate slot the GPU signed with.
	SlotID byte
	// Measurements are the measurement blocks' digests by index, numbered from 0 as
	// NVIDIA's RIMs number them: the SPDM block index minus one.
	Measurements map[int][]byte
	// DriverVersion ("535.86.06") and VBIOSVersion ("96.00.5E.00.01") come from the
	// response's opaque data.
	DriverVersion, VBIOSVersion string
	// Opaque holds every field of NVIDIA's opaque data by its type, raw, including the
	// ones named below.
	Opaque map[uint16][]byte
	// Project, ProjectSKU, ChipSKU are the board identifiers that name the VBIOS RIM
	// (for example "1010_0200_882_96005E0001"); empty when absent.
	Project, ProjectSKU, ChipSKU string
	// FWID is the firmware identifier of the opaque data, which the device certificate
	// also carries; empty when absent.
	FWID []byte
	// CCMode is the confidential-computing mode the signed opaque data's feature flag
	// (type 36) states: CCModeSPT (one GPU in CC mode), CCModeMPT (several, in
	// protected multi-GPU mode) or CCModePPCIe (Hopper's protected PCIe mode); "" when
	// the report carries no feature flag, as Hopper reports of the sample's age do not:
	// such a report does not say, signed, whether CC mode is on.
	CCMode string
}

// The SPDM 1.1 GET_MEASUREMENTS exchange as NVIDIA's driver returns it (DMTF DSP0274
// 1.1, sections 10.11): the request, then the response.
//
//	request:  SPDMVersion(1)=0x11 Code(1)=0xE0 Param1(1)=0x01 (signature requested)
//	          Param2(1)=0xFF (all measurements) Nonce(32) SlotIDParam(1)
//	response: SPDMVersion(1)=0x11 Code(1)=0x60 Param1(1) Param2(1)=slot
//	          NumberOfBlocks(1) MeasurementRecordLength(3, LE) MeasurementRecord
//	          Nonce(32) OpaqueLength(2, LE) OpaqueData Signature(96)
//	block:    Index(1) MeasurementSpecification(1)=0x01 (DMTF) MeasurementSize(2, LE)
//	          DMTFSpecMeasurementValueType(1) DMTFSpecMeasurementValueSize(2, LE) Value
//	opaque:   a sequence of DataType(2, LE) DataSize(2, LE) Data(DataSize)
//
// The signature is ECDSA P-384, r || s (48 bytes each, big-endian), over the SHA-384 of
// request || response up to the signature: the sample report's signature verifies over
// exactly those bytes and over nothing shorter (the response alone does not verify).
const (
	spdmVersion11          = 0x11
	codeGetMeasurements    = 0xE0
	codeMeasurements       = 0x60
	requestSignature       = 0x01 // Param1: the responder must sign
	requestAllMeasurements = 0xFF // Param2: every measurement block
	requestLen             = 4 + 32 + 1
	responseHeaderLen      = 8
	dmtfSpecification      = 0x01
	// SignatureLen is the size of an ECDSA P-384 signature as SPDM carries it: r || s.
	SignatureLen = 96
	// MaxReportSize bounds what ParseReport reads: NVIDIA's reports are about 4 KiB
	// (64 blocks of 55 bytes, a few hundred bytes of opaque data); SPDM's own field
	// sizes allow 16 MiB, which a verifier need not buffer from a stranger.
	MaxReportSize = 64 << 10
)

// The opaque data types NVIDIA's driver emits (nvtrust's OPAQUE_FIELD_ID_* values) that
// Report names; the others stay in Report.Opaque.
const (
	opaqueDriverVersion = 3
	opaqueVBIOSVersion  = 6
	opaqueNVDEC0Status  = 11
	opaqueChipSKU       = 15
	opaqueProject       = 17
	opaqueProjectSKU    = 18
	opaqueFWID          = 20
	opaqueFeatureFlag   = 36
)

// The values of Report.CCMode, from the opaque feature flag.
const (
	CCModeSPT   = "spt"
	CCModeMPT   = "mpt"
	CCModePPCIe = "ppcie"
)

// featureFlags names the values of the opaque feature flag.
var featureFlags = map[byte]string{0: CCModeSPT, 1: CCModeMPT, 2: CCModePPCIe}

// reportReader reads little-endian fields off a byte slice, remembering the first
// shortfall so that a parser can read a whole structure and check once.
type reportReader struct {
	b   []byte
	off int
	err error
}

func (r *reportReader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: %s needs %d bytes at offset %d, %d left", ErrReport, what, n, r.off, len(r.b)-r.off)
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reportReader) u8(what string) byte {
	if v := r.bytes(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (r *reportReader) u16(what string) int {
	if v := r.bytes(2, what); v != nil {
		return int(binary.LittleEndian.Uint16(v))
	}
	return 0
}

func (r *reportReader) u24(what string) int {
	if v := r.bytes(3, what); v != nil {
		return int(v[0]) | int(v[1])<<8 | int(v[2])<<16
	}
	return 0
}

// expect records a format error unless ok.
func (r *reportReader) expect(ok bool, format string, args ...any) {
	if r.err == nil && !ok {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrReport}, args...)...)
	}
}

// ParseReport decodes an SPDM 1.1 GET_MEASUREMENTS request followed by its response
// (the layout above), without checking any signature: its fields mean nothing until
// Verify succeeds. It fails, wrapping ErrReport, when the input is over MaxReportSize, a
// length does not fit, bytes are left over, the messages are not a signed
// GET_MEASUREMENTS exchange for all measurements, a measurement block is not in DMTF's
// format or its index repeats, or the opaque data does not parse. The byte slices of
// the Report share b's memory (capped: appending to one does not write into b). Cost:
// one pass and two maps, about 20 µs (BenchmarkParseReportNVIDIA).
func ParseReport(b []byte) (*Report, error) {
	_, _, rep, err := parseReport(b)
	return rep, err
}

// parseReport is ParseReport that also returns the signed bytes (request || response
// up to the signature) and the signature.
func parseReport(b []byte) (signed, sig []byte, rep *Report, err error) {
	if len(b) > MaxReportSize {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrReport, len(b), MaxReportSize)
	}
	r := &reportReader{b: b}
	rep = &Report{Measurements: map[int][]byte{}, Opaque: map[uint16][]byte{}}

	rep.SPDMVersion = r.u8("request version")
	r.expect(rep.SPDMVersion == spdmVersion11, "request SPDM version %#x, want %#x", rep.SPDMVersion, spdmVersion11)
	code := r.u8("request code")
	r.expect(code == codeGetMeasurements, "request code %#x, want GET_MEASUREMENTS %#x", code, codeGetMeasurements)
	p1, p2 := r.u8("request param1"), r.u8("request param2")
	r.expect(p1 == requestSignature, "request param1 %#x: the GPU was not asked to sign", p1)
	r.expect(p2 == requestAllMeasurements, "request param2 %#x: not a request for all measurements", p2)
	copy(rep.Nonce[:], r.bytes(32, "request nonce"))
	rep.SlotID = r.u8("request slot")

	version := r.u8("response version")
	r.expect(version == rep.SPDMVersion, "response SPDM version %#x, request's %#x", version, rep.SPDMVersion)
	code = r.u8("response code")
	r.expect(code == codeMeasurements, "response code %#x, want MEASUREMENTS %#x", code, codeMeasurements)
	r.u8("response param1")
	slot := r.u8("response param2")
	r.expect(slot&0x0F == rep.SlotID&0x0F, "response slot %d, requested %d", slot&0x0F, rep.SlotID&0x0F)
	blocks := int(r.u8("number of blocks"))
	record := &reportReader{b: r.bytes(r.u24("measurement record length"), "measurement record")}
	for range blocks {
		parseBlock(record, rep.Measurements)
	}
	if r.err == nil && record.err == nil {
		record.expect(record.off == len(record.b), "measurement record has %d bytes after its %d blocks", len(record.b)-record.off, blocks)
	}
	if record.err != nil && r.err == nil {
		r.err = record.err
	}
	copy(rep.ResponderNonce[:], r.bytes(32, "response nonce"))
	opaque := &reportReader{b: r.bytes(r.u16("opaque data length"), "opaque data")}
	for r.err == nil && opaque.err == nil && opaque.off < len(opaque.b) {
		typ := opaque.u16("opaque field type")
		value := opaque.bytes(opaque.u16("opaque field size"), "opaque field")
		if _, dup := rep.Opaque[uint16(typ)]; dup && opaque.err == nil {
			opaque.expect(false, "opaque field %d repeats", typ)
		}
		if opaque.err == nil {
			rep.Opaque[uint16(typ)] = value
		}
	}
	if opaque.err != nil && r.err == nil {
		r.err = opaque.err
	}
	signedLen := r.off
	sig = r.bytes(SignatureLen, "signature")
	r.expect(r.off == len(b), "%d bytes after the signature", len(b)-r.off)
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	if err := rep.nameOpaque(); err != nil {
		return nil, nil, nil, err
	}
	return b[:signedLen:signedLen], sig, rep, nil
}

// parseBlock reads one measurement block into m, keyed by RIM index (SPDM index - 1).
func parseBlock(r *reportReader, m map[int][]byte) {
	index := int(r.u8("block index"))
	spec := r.u8("block measurement specification")
	block := &reportReader{b: r.bytes(r.u16("block size"), "block")}
	r.expect(index >= 1, "measurement block index 0")
	r.expect(spec == dmtfSpecification, "measurement block %d is not in DMTF's format (specification %#x)", index, spec)
	block.u8("measurement value type")
	value := block.bytes(block.u16("measurement value size"), "measurement value")
	block.expect(block.off == len(block.b), "measurement block %d has %d bytes after its value", index, len(block.b)-block.off)
	if block.err != nil && r.err == nil {
		r.err = block.err
	}
	if _, dup := m[index-1]; dup {
		r.expect(false, "measurement block index %d repeats", index)
	}
	if r.err == nil {
		m[index-1] = value
	}
}

// nameOpaque fills the named fields from rep.Opaque.
func (rep *Report) nameOpaque() error {
	rep.DriverVersion = cString(rep.Opaque[opaqueDriverVersion])
	rep.Project = cString(rep.Opaque[opaqueProject])
	rep.ProjectSKU = cString(rep.Opaque[opaqueProjectSKU])
	rep.ChipSKU = cString(rep.Opaque[opaqueChipSKU])
	rep.FWID = rep.Opaque[opaqueFWID]
	if v, ok := rep.Opaque[opaqueVBIOSVersion]; ok {
		if len(v) != 8 {
			return fmt.Errorf("%w: VBIOS version of %d bytes, want 8", ErrReport, len(v))
		}
		rep.VBIOSVersion = formatVBIOSVersion(v)
	}
	if v, ok := rep.Opaque[opaqueFeatureFlag]; ok {
		name, known := featureFlags[firstByte(v)]
		if len(v) != 1 || !known {
			return fmt.Errorf("%w: feature flag %x is none of NVIDIA's", ErrReport, v)
		}
		rep.CCMode = name
	}
	return nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0xFF
	}
	return b[0]
}

// cString is b up to its first NUL, as the driver pads its strings.
func cString(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\x00")
	return s
}

// formatVBIOSVersion renders the 8-byte little-endian VBIOS version field the way
// NVIDIA names VBIOS RIMs: of the value's 16 hex digits, the low 8 then the two above
// them, dotted in pairs (00 9f 00 96 01 00 00 00 is "96.00.9F.00.01").
func formatVBIOSVersion(v []byte) string {
	x := binary.LittleEndian.Uint64(v)
	return fmt.Sprintf("%02X.%02X.%02X.%02X.%02X", byte(x>>24), byte(x>>16), byte(x>>8), byte(x), byte(x>>32))
}

// vbiosVersionField is formatVBIOSVersion's inverse, for the simulator.
func vbiosVersionField(version string) ([]byte, error) {
	var a, b, c, d, e byte
	if _, err := fmt.Sscanf(version, "%02X.%02X.%02X.%02X.%02X", &a, &b, &c, &d, &e); err != nil {
		return nil, fmt.Errorf("VBIOS version %q: %v", version, err)
	}
	return binary.LittleEndian.AppendUint64(nil, uint64(a)<<24|uint64(b)<<16|uint64(c)<<8|uint64(d)|uint64(e)<<32), nil
}
