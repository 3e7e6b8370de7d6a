package attest

import (
	"cmp"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrPolicy is wrapped by every error of ParsePolicy and LoadPolicy.
var ErrPolicy = errors.New("policy")

// maxPolicyBytes bounds a policy file; real ones are a few KiB.
const maxPolicyBytes = 1 << 20

// TCB statuses, as Intel's TCB info names them, from best to worst. A policy's
// min_tcb_status is one of them, or TCBAny; TCBRevoked is never acceptable.
const (
	TCBAny                               = "any"
	TCBUpToDate                          = "UpToDate"
	TCBSWHardeningNeeded                 = "SWHardeningNeeded"
	TCBConfigurationNeeded               = "ConfigurationNeeded"
	TCBConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	TCBOutOfDate                         = "OutOfDate"
	TCBOutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	TCBRevoked                           = "Revoked"
)

// tcbOrder ranks the statuses a policy may require, best first.
var tcbOrder = []string{TCBUpToDate, TCBSWHardeningNeeded, TCBConfigurationNeeded,
	TCBConfigurationAndSWHardeningNeeded, TCBOutOfDate, TCBOutOfDateConfigurationNeeded}

// tcbAtLeast reports whether status is min or better. An unknown status, Revoked
// included, is never at least anything.
func tcbAtLeast(status, min string) bool {
	i := slices.Index(tcbOrder, status)
	return i >= 0 && i <= slices.Index(tcbOrder, min)
}

// Policy says which evidence a client accepts. It is read from JSON by ParsePolicy or
// LoadPolicy, and written by Report.PinningPolicy (cocoon verify --write-policy):
//
//	{
//	  "mrtd":            ["<96 hex>", ...],
//	  "rtmr0":           ["<96 hex>", ...],
//	  "rtmr1":           ["<96 hex>", ...],
//	  "rtmr2":           ["<96 hex>", ...],
//	  "td_attributes":   ["<16 hex>", ...],
//	  "xfam":            ["<16 hex>", ...],
//	  "mr_seam":         ["<96 hex>", ...],
//	  "mr_owner":        ["<96 hex>", ...],
//	  "mr_config_id":    ["<96 hex>", ...],
//	  "mr_owner_config": ["<96 hex>", ...],
//	  "host_binary":     ["sha256:<64 hex>", ...],
//	  "abi_version":     1,
//	  "sandbox_policy":  ["sha256:<64 hex>", ...],
//	  "backends":        ["embedded", "openai http://127.0.0.1:8000/v1", ...],
//	  "models":          ["sha256:<64 hex>" or a model name, ...],
//	  "sealing":         ["file", ...],
//	  "settlement_keys": ["<64 hex>", ...],
//	  "settlement_key_origins": ["generated"],
//	  "min_tcb_status":  "UpToDate", "SWHardeningNeeded", ... or "any",
//	  "trust_sim_root":  "sim-root.pem" or "-----BEGIN CERTIFICATE-----...",
//	  "require_gpu":     true,
//	  "gpu_driver_versions": ["550.54.15", ...],
//	  "gpu_vbios_versions":  ["96.00.9F.00.04", ...],
//	  "gpu_cc_modes":    ["spt", "unknown", ...],
//	  "gpu_driver_rim":  "driver-rim.xml" or "<SoftwareIdentity ...",
//	  "gpu_vbios_rim":   "vbios-rim.xml" or "<SoftwareIdentity ...",
//	  "trust_sim_gpu_root": "sim-gpu-roots.pem" or "-----BEGIN CERTIFICATE-----..."
//	}
//
// Every member is optional. An empty or absent list allows any value, and the report of
// VerifyEvidence then says that the member was not checked (a "skip" line, which
// EvidenceOptions.Strict refuses), so a reviewer sees what a policy leaves open. Hex is
// lowercase; td_attributes and xfam are the 8 bytes as the quote carries them
// (little-endian). Some evidence is refused whatever the policy says: a debug TD
// (td_attributes cannot list one), and a backend outside the TD unless backends names
// it.
type Policy struct {
	// MRTD lists the accepted measurements of the TD's initial memory (the firmware).
	MRTD []string `json:"mrtd,omitempty"`
	// RTMR0, RTMR1 and RTMR2 list the accepted values of the boot-time runtime
	// registers: firmware configuration, kernel and initrd, kernel command line. They
	// vouch for the code that measures the host into RTMR3: a policy that pins
	// host_binary or models without MRTD, RTMR1 and RTMR2 gets a warning.
	RTMR0 []string `json:"rtmr0,omitempty"`
	RTMR1 []string `json:"rtmr1,omitempty"`
	RTMR2 []string `json:"rtmr2,omitempty"`
	// TDAttributes lists the accepted TD attributes (16 hex digits, the quote's
	// little-endian bytes). None may have the DEBUG bit: a debug TD is always refused.
	TDAttributes []string `json:"td_attributes,omitempty"`
	// XFAM lists the accepted sets of extended CPU features (16 hex digits).
	XFAM []string `json:"xfam,omitempty"`
	// MRSEAM lists the accepted measurements of the TDX module.
	MRSEAM []string `json:"mr_seam,omitempty"`
	// MROwner, MRConfigID and MROwnerConfig list the accepted values of the fields the
	// TD's creator sets (its owner's identity, a configuration id, the owner's
	// configuration); all zero unless the TD image uses them.
	MROwner       []string `json:"mr_owner,omitempty"`
	MRConfigID    []string `json:"mr_config_id,omitempty"`
	MROwnerConfig []string `json:"mr_owner_config,omitempty"`
	// HostBinary lists the accepted SHA-256 of the cocoon-host executable, as the
	// host-binary event of the event log measures it.
	HostBinary []string `json:"host_binary,omitempty"`
	// ABIVersion is the module ABI version the host must measure; 0 allows any.
	ABIVersion uint32 `json:"abi_version,omitempty"`
	// SandboxPolicy lists the accepted "sha256:<hex>" of the sandbox policy (the limits
	// and environment every module runs under, attest.SandboxPolicy), as the
	// sandbox-policy event measures it.
	SandboxPolicy []string `json:"sandbox_policy,omitempty"`
	// Backends lists the accepted backends, exactly as the backend event measures them:
	// "embedded", "plugin", or "openai " and the URL prompts are sent to. A backend
	// outside the TD (anything but embedded, plugin, a loopback URL or a unix socket) is
	// refused unless it is listed here.
	Backends []string `json:"backends,omitempty"`
	// Models lists the accepted model identities, as the model event measures them
	// ("sha256:<hex>" of the model file for the embedded engine, "sha256-tree:<hex>" of
	// a measured weights folder, see attest/weights).
	Models []string `json:"models,omitempty"`
	// Sealing lists the accepted sources of the host's root sealing secret, as the
	// sealing event measures them: "file" (a TD-private secret the TD image provisions),
	// "sim" (on the data disk: protects nothing) or "none" (the host persists no
	// secret). A production policy lists ["file"].
	Sealing []string `json:"sealing,omitempty"`
	// SettlementKeys lists the accepted settlement keys (64 hex digits, an ed25519
	// public key), as the settlement-key event measures them: pin it to be sure receipts
	// and escrow charges come from a known host.
	SettlementKeys []string `json:"settlement_keys,omitempty"`
	// SettlementKeyOrigins lists the accepted origins of the settlement key, as the
	// settlement-key-origin event measures them: "generated" (inside the host, only
	// ever stored sealed) or "imported" (kept in plain text on the data disk by an
	// earlier version: its operator may know it). Pin ["generated"] to refuse the
	// latter.
	SettlementKeyOrigins []string `json:"settlement_key_origins,omitempty"`
	// MinTCBStatus is the least TCB status accepted, in the order of the TCB
	// constants (TCBUpToDate best). It needs Intel's collateral
	// (EvidenceOptions.Collateral), and refuses simulated evidence, which has none.
	// "any" accepts any status, and a quote whose status is not evaluated, as a choice
	// the report shows as such; empty does too, but leaves the status unpinned (a skip
	// line).
	MinTCBStatus string `json:"min_tcb_status,omitempty"`
	// TrustSimRoot is the simulator root certificate to trust: PEM text, or the path of
	// a PEM file (relative to the policy file in LoadPolicy). Empty refuses simulated
	// evidence. Never set it for a production host: anyone can run a simulator.
	TrustSimRoot string `json:"trust_sim_root,omitempty"`
	// RequireGPU refuses evidence that attests no GPU: a host that measures none
	// (serve --gpu none), or none of GPUs at all (a host older than GPU attestation).
	RequireGPU bool `json:"require_gpu,omitempty"`
	// GPUDriverVersions and GPUVBIOSVersions list the accepted driver and VBIOS
	// versions of every attested GPU, as its verified report states them.
	GPUDriverVersions []string `json:"gpu_driver_versions,omitempty"`
	GPUVBIOSVersions  []string `json:"gpu_vbios_versions,omitempty"`
	// GPUCCModes lists the accepted confidential-computing modes of every attested
	// GPU as its signed report states them ("spt", "mpt", "ppcie"), or "unknown" for a
	// report that states none (a Hopper's). Empty accepts any CC mode, warns about
	// "unknown" (EvidenceOptions.Strict refuses it) and refuses anything else: out of
	// CC mode a GPU carries prompts and weights over PCIe in plaintext.
	GPUCCModes []string `json:"gpu_cc_modes,omitempty"`
	// GPUDriverRIM and GPUVBIOSRIM are NVIDIA's Reference Integrity Manifests (SWID
	// tags) the GPUs' measurements are checked against: XML text, or the path of a file
	// (relative to the policy file in LoadPolicy). Without them a GPU's measurements
	// are not checked, which fails its report.
	GPUDriverRIM string `json:"gpu_driver_rim,omitempty"`
	GPUVBIOSRIM  string `json:"gpu_vbios_rim,omitempty"`
	// TrustSimGPURoot is a simulated GPU's roots to trust (SimGPURootsFile: the device
	// root, then the RIM root): PEM text, or the path of a PEM file (relative to the
	// policy file in LoadPolicy). Empty refuses simulated GPUs. Never set it for a
	// production host.
	TrustSimGPURoot string `json:"trust_sim_gpu_root,omitempty"`
}

// ParsePolicy decodes a policy strictly: unknown members, trailing data, malformed
// measurements or hashes and an unsupported TCB status are errors wrapping ErrPolicy.
// A relative trust_sim_root path stays relative to the working directory.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	if err := decodeStrict(b, maxPolicyBytes, &p, ErrPolicy, "policy"); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	return &p, nil
}

// LoadPolicy reads and parses the policy file at path. A relative path in
// trust_sim_root, trust_sim_gpu_root, gpu_driver_rim or gpu_vbios_rim is made relative
// to the file's directory.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, f := range []struct {
		value  *string
		inline func(string) bool
	}{{&p.TrustSimRoot, isPEM}, {&p.TrustSimGPURoot, isPEM}, {&p.GPUDriverRIM, isXML}, {&p.GPUVBIOSRIM, isXML}} {
		if *f.value != "" && !f.inline(*f.value) && !filepath.IsAbs(*f.value) {
			*f.value = filepath.Join(filepath.Dir(path), *f.value)
		}
	}
	return p, nil
}

func (p *Policy) check() error {
	for _, m := range []struct {
		name   string
		values []string
		bytes  int
	}{{"mrtd", p.MRTD, 48}, {"rtmr0", p.RTMR0, 48}, {"rtmr1", p.RTMR1, 48}, {"rtmr2", p.RTMR2, 48},
		{"td_attributes", p.TDAttributes, 8}, {"xfam", p.XFAM, 8}, {"mr_seam", p.MRSEAM, 48},
		{"mr_owner", p.MROwner, 48}, {"mr_config_id", p.MRConfigID, 48}, {"mr_owner_config", p.MROwnerConfig, 48}} {
		for _, v := range m.values {
			if _, err := decodeHex(v, m.bytes); err != nil {
				return fmt.Errorf("%s %q: want %d lowercase hex digits: %v", m.name, v, 2*m.bytes, err)
			}
		}
	}
	for _, v := range p.TDAttributes {
		if b, _ := decodeHex(v, 8); (&Quote{TDAttributes: [8]byte(b)}).Debug() {
			return fmt.Errorf("td_attributes %q: the DEBUG bit is set, and no policy can accept a debug TD: its host reads and writes the TD's memory", v)
		}
	}
	for _, m := range []struct {
		name   string
		values []string
	}{{"host_binary", p.HostBinary}, {"sandbox_policy", p.SandboxPolicy}} {
		for _, v := range m.values {
			if err := checkSHA256Identity(v); err != nil {
				return fmt.Errorf("%s: %v", m.name, err)
			}
		}
	}
	for _, m := range []struct {
		name   string
		typ    EventType
		values []string
	}{{"backends", EventBackend, p.Backends}, {"models", EventModel, p.Models}} {
		for _, v := range m.values {
			if err := (Event{Type: m.typ, Data: []byte(v)}).Validate(); err != nil {
				return fmt.Errorf("%s %q: %v", m.name, v, err)
			}
		}
	}
	for _, v := range p.SettlementKeys {
		if _, err := decodeHex(v, ed25519.PublicKeySize); err != nil {
			return fmt.Errorf("settlement_keys %q: want 64 lowercase hex digits (an ed25519 public key): %v", v, err)
		}
	}
	for _, m := range []struct {
		name           string
		values, domain []string
	}{{"sealing", p.Sealing, sealingSources}, {"settlement_key_origins", p.SettlementKeyOrigins, settlementKeyOrigins}} {
		for _, v := range m.values {
			if !slices.Contains(m.domain, v) {
				return fmt.Errorf("%s %q: want one of %s", m.name, v, strings.Join(m.domain, ", "))
			}
		}
	}
	for _, m := range []struct {
		name   string
		values []string
	}{{"gpu_driver_versions", p.GPUDriverVersions}, {"gpu_vbios_versions", p.GPUVBIOSVersions}, {"gpu_cc_modes", p.GPUCCModes}} {
		for _, v := range m.values {
			if err := checkGPUText(v, true); err != nil {
				return fmt.Errorf("%s %q: %v", m.name, v, err)
			}
		}
	}
	if p.MinTCBStatus != "" && p.MinTCBStatus != TCBAny && !slices.Contains(tcbOrder, p.MinTCBStatus) {
		return fmt.Errorf("min_tcb_status %q: want %q or one of %s", p.MinTCBStatus, TCBAny, strings.Join(tcbOrder, ", "))
	}
	return nil
}

// SimRoot returns the certificate TrustSimRoot names, or nil when it is empty.
func (p *Policy) SimRoot() (*x509.Certificate, error) {
	b, err := policyFile(p.TrustSimRoot, isPEM, "trust_sim_root")
	if b == nil || err != nil {
		return nil, err
	}
	c, err := ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%w: trust_sim_root: %v", ErrPolicy, err)
	}
	return c, nil
}

// SimGPURoots returns the roots TrustSimGPURoot names, or nil when it is empty.
func (p *Policy) SimGPURoots() (*SimGPURoots, error) {
	b, err := policyFile(p.TrustSimGPURoot, isPEM, "trust_sim_gpu_root")
	if b == nil || err != nil {
		return nil, err
	}
	roots, err := ParseSimGPURoots(b)
	if err != nil {
		return nil, fmt.Errorf("%w: trust_sim_gpu_root: %v", ErrPolicy, err)
	}
	return roots, nil
}

// CarryGPUTrust gives p, a policy that requires a GPU (PinningPolicy's), what verifying
// its GPUs again needs from the policy from and the simulated GPU roots a verifier
// trusted (nil for none): from's GPU RIMs and the roots (roots, else from's
// trust_sim_gpu_root), inline, so that p stands alone wherever it is written. It
// fails when a file from names cannot be read.
func (p *Policy) CarryGPUTrust(from *Policy, roots *SimGPURoots) error {
	if !p.RequireGPU {
		return nil
	}
	for _, f := range []struct {
		to     *string
		from   string
		inline func(string) bool
		member string
	}{{&p.GPUDriverRIM, from.GPUDriverRIM, isXML, "gpu_driver_rim"}, {&p.GPUVBIOSRIM, from.GPUVBIOSRIM, isXML, "gpu_vbios_rim"},
		{&p.TrustSimGPURoot, from.TrustSimGPURoot, isPEM, "trust_sim_gpu_root"}} {
		b, err := policyFile(f.from, f.inline, f.member)
		if err != nil {
			return err
		}
		*f.to = string(b)
	}
	if roots != nil {
		p.TrustSimGPURoot = string(append(pemCert(roots.Device), pemCert(roots.RIM)...))
	}
	return nil
}

// gpuRIMs returns the driver and VBIOS RIMs the policy gives, nil for those it does not.
func (p *Policy) gpuRIMs() (driver, vbios []byte, err error) {
	if driver, err = policyFile(p.GPUDriverRIM, isXML, "gpu_driver_rim"); err != nil {
		return nil, nil, err
	}
	vbios, err = policyFile(p.GPUVBIOSRIM, isXML, "gpu_vbios_rim")
	return driver, vbios, err
}

// policyFile returns the bytes of a policy member that holds either inline text (when
// inline says so) or a file's path: nil for an empty member.
func policyFile(value string, inline func(string) bool, member string) ([]byte, error) {
	switch {
	case value == "":
		return nil, nil
	case inline(value):
		return []byte(value), nil
	}
	b, err := os.ReadFile(value)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrPolicy, member, err)
	}
	return b, nil
}

func isPEM(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") }

// isXML says whether a RIM member holds the document itself rather than a path.
func isXML(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "<") }

// checkSHA256Identity reports whether s is "sha256:" and 64 lowercase hex digits.
func checkSHA256Identity(s string) error {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return fmt.Errorf("%q: want \"sha256:\" and 64 lowercase hex digits", s)
	}
	if _, err := decodeHex(h, 32); err != nil {
		return fmt.Errorf("%q: want \"sha256:\" and 64 lowercase hex digits: %v", s, err)
	}
	return nil
}

// PinningPolicy returns a policy that pins everything the evidence of r measured: MRTD,
// RTMR0-2, the TD attributes, XFAM, MRSEAM, MROWNER, MRCONFIGID and MROWNERCONFIG, each
// measured event (host binary, ABI version, sandbox policy, backend, model, sealing,
// settlement key and its origin), and the TCB status (at least the one evaluated, or
// "any" when none was: then the policy accepts any), and for evidence with verified GPU
// reports require_gpu and every GPU's driver and VBIOS versions and CC mode. It leaves
// trust_sim_root, trust_sim_gpu_root and the GPU RIMs to the caller, who knows which
// roots it trusted and which RIMs it used. Verified under that policy, the same host
// passes with no skip line; a host that changes any measurement fails.
//
// It refuses a report that is not OK (a policy that pins a failed host's measurements
// would vouch for them) or that has no verified quote and event log.
func (r *Report) PinningPolicy() (*Policy, error) {
	if !r.OK() {
		return nil, errors.New("attest: the evidence did not verify, so its measurements are not to be pinned")
	}
	if r.quote == nil || r.events == nil {
		return nil, errors.New("attest: the report holds no verified quote and event log")
	}
	p := &Policy{}
	for _, m := range tdPins(p, r.quote) {
		*m.allowed = []string{m.value}
	}
	var abiVersion []string
	for _, c := range eventPins(p, &abiVersion) {
		if i := slices.IndexFunc(r.events, func(e Event) bool { return e.Type == c.typ }); i >= 0 {
			*c.allowed = []string{r.events[i].Value()}
		}
	}
	if abiVersion != nil {
		v, err := strconv.ParseUint(abiVersion[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("attest: ABI version %q: %v", abiVersion[0], err)
		}
		p.ABIVersion = uint32(v)
	}
	p.MinTCBStatus = cmp.Or(r.quote.TCBStatus, TCBAny)
	for _, id := range r.gpus {
		p.RequireGPU = true
		for _, pin := range []struct {
			allowed *[]string
			value   string
		}{{&p.GPUDriverVersions, id.DriverVersion}, {&p.GPUVBIOSVersions, id.VBIOSVersion}, {&p.GPUCCModes, ccModeName(id.CCMode)}} {
			if !slices.Contains(*pin.allowed, pin.value) {
				*pin.allowed = append(*pin.allowed, pin.value)
			}
		}
	}
	if err := p.check(); err != nil {
		// A TCB status no policy accepts as a minimum, such as Revoked.
		return nil, fmt.Errorf("attest: %v", err)
	}
	return p, nil
}
