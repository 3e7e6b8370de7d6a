// Package nvidia verifies an NVIDIA GPU's attestation evidence offline: the SPDM
// GET_MEASUREMENTS report a Hopper-class GPU signs with its device key, the device's
// certificate chain, and the measurements it reports against NVIDIA's Reference
// Integrity Manifests (RIMs, SWID tags signed with XML-DSig).
//
// (Package documentation is completed with the implementation.)
package nvidia

import (
	"crypto/x509"
	"errors"
	"time"
)

// errUnimplemented is returned by the API skeleton until the implementation lands.
var errUnimplemented = errors.New("nvidia: not implemented yet")

// Evidence is what a host serves per GPU: the SPDM GET_MEASUREMENTS request and response
// (request || response, raw bytes, as in NVIDIA's hopperAttestationReport.txt once
// hex-decoded) and the GPU's certificate chain (PEM, leaf first, as the driver returns it).
type Evidence struct {
	Report    []byte `json:"report"`
	CertChain []byte `json:"cert_chain"`
}

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
	// CCMode is the confidential-computing mode the opaque data's feature flag states
	// ("on", "off", "devtools", "ppcie"), or "" when the report carries no feature flag
	// (Hopper reports of the sample's age do not).
	CCMode string
}

// ParseReport decodes an SPDM 1.1 GET_MEASUREMENTS request followed by its response,
// without checking any signature. It fails when a length does not fit, when bytes are
// left over, or when the messages are not a signed GET_MEASUREMENTS exchange.
func ParseReport(b []byte) (*Report, error) {
	return nil, errUnimplemented
}

// RIMOptions are the inputs of ParseRIM besides the document.
type RIMOptions struct {
	// Roots are the roots a RIM's signing chain must lead to; nil means NVIDIA's
	// pinned RIM root (verifier_RIM_root.pem).
	Roots *x509.CertPool
	// Now is the time the signing chain must be valid at; zero means time.Now().
	Now time.Time
}

// RIMMeasurement is one Resource of a RIM's payload: the reference values a GPU's
// measurement at that index may take.
type RIMMeasurement struct {
	// Index is the RIM's index, 0-based (SPDM's index minus one).
	Index int
	// Active says whether the measurement is to be compared: an inactive one is not.
	Active bool
	// Alternatives are the accepted digests; the measurement matches if it equals one.
	Alternatives [][]byte
}

// RIM is a parsed SWID tag whose XML-DSig signature verified to a trusted root.
type RIM struct {
	// TagID is the tag's tagId, Name its name (the chip, "GH100").
	TagID, Name string
	// Version is the Meta element's colloquialVersion: the driver version for a driver
	// RIM ("545.00"), the VBIOS version for a VBIOS RIM.
	Version string
	// Measurements are the payload's Resources by Index.
	Measurements map[int]RIMMeasurement
	// Signer is the chain that signed the tag, leaf first, ending at the trusted root.
	Signer []*x509.Certificate
}

// ParseRIM parses a RIM and checks its XML-DSig signature: the enveloped signature's
// reference digest over the canonicalized document, the signature over the
// canonicalized SignedInfo with the key of the embedded certificate, and that
// certificate's chain to opts.Roots at opts.Now. Nothing of the document is returned
// unless all of that holds.
func ParseRIM(xml []byte, opts RIMOptions) (*RIM, error) {
	return nil, errUnimplemented
}

// Identity is what a verified report says about the GPU, for the event log and policy.
type Identity struct {
	// ChainSHA256 is the SHA-256 of the DER certificates of the device chain, leaf
	// first, concatenated.
	ChainSHA256 [32]byte
	// DriverVersion, VBIOSVersion and CCMode are Report's.
	DriverVersion, VBIOSVersion string
	CCMode                      string
	// Simulated is set when the device chain ends at a root other than NVIDIA's.
	Simulated bool
}

// Check is one line of the GPU's verification report, like attest.Check.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// VerifyOptions are the inputs of Verify besides the evidence and the nonce.
type VerifyOptions struct {
	// DeviceRoots are the roots the device chain must lead to; nil means NVIDIA's
	// pinned device identity root. A simulated GPU verifies only when its root is
	// given here.
	DeviceRoots *x509.CertPool
	// RIMRoots are the roots RIMs must be signed under; nil means NVIDIA's pinned RIM root.
	RIMRoots *x509.CertPool
	// Now is the time certificates must be valid at; zero means time.Now().
	Now time.Time
	// DriverRIM and VBIOSRIM are the RIM files for the report's driver and VBIOS
	// (cached, or fetched by the caller). Without them the measurements are not checked
	// and their check fails.
	DriverRIM, VBIOSRIM []byte
}

// Verify checks a GPU's evidence against nonce and returns the GPU's identity and one
// Check per verification step. The error is non-nil when any check failed (it names the
// first); the checks are returned either way, for the report.
func Verify(ev Evidence, nonce [32]byte, opts VerifyOptions) (Identity, []Check, error) {
	return Identity{}, nil, errUnimplemented
}

// Sim is a simulated GPU for machines without one: its own local device root and RIM
// root, persisted in dir, producing Evidence in exactly NVIDIA's formats (SPDM report
// signed with ECDSA P-384 by a device key chained to the local root; driver and VBIOS
// RIMs signed by the local RIM root), so the whole verification path runs. Verifiers
// refuse it unless told to trust its roots.
type Sim struct{}

// NewSim loads the simulated GPU's keys from dir, creating them on first use.
func NewSim(dir string) (*Sim, error) {
	return nil, errUnimplemented
}

// Evidence returns the simulated GPU's signed report for nonce and its chain.
func (s *Sim) Evidence(nonce [32]byte) (Evidence, error) {
	return Evidence{}, errUnimplemented
}

// RIMs returns the signed driver and VBIOS RIMs that match the simulated GPU's reports.
func (s *Sim) RIMs() (driver, vbios []byte) { return nil, nil }

// Roots returns the simulated device root and RIM root, PEM, for --trust-sim-gpu-root.
func (s *Sim) Roots() (device, rim []byte) { return nil, nil }
