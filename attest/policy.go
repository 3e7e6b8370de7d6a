package attest

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
// LoadPolicy:
//
//	{
//	  "mrtd":            ["<96 hex>", ...],
//	  "rtmr0":           ["<96 hex>", ...],
//	  "rtmr1":           ["<96 hex>", ...],
//	  "rtmr2":           ["<96 hex>", ...],
//	  "host_binary":     ["sha256:<64 hex>", ...],
//	  "models":          ["sha256:<64 hex>" or a model name, ...],
//	  "settlement_keys": ["<64 hex>", ...],
//	  "sealing":         ["file", ...],
//	  "settlement_key_origins": ["generated"],
//	  "abi_version":     1,
//	  "min_tcb_status":  "UpToDate", "SWHardeningNeeded", ... or "any",
//	  "trust_sim_root":  "sim-root.pem" or "-----BEGIN CERTIFICATE-----..."
//	}
//
// Every member is optional. An empty or absent list allows any value, and the report of
// VerifyEvidence then says that the member was not checked, so a reviewer sees what a
// policy leaves open. Hex is lowercase.
type Policy struct {
	// MRTD lists the accepted measurements of the TD's initial memory (the firmware).
	MRTD []string `json:"mrtd,omitempty"`
	// RTMR0, RTMR1 and RTMR2 list the accepted values of the boot-time runtime
	// registers: firmware configuration, kernel and initrd, kernel command line.
	RTMR0 []string `json:"rtmr0,omitempty"`
	RTMR1 []string `json:"rtmr1,omitempty"`
	RTMR2 []string `json:"rtmr2,omitempty"`
	// HostBinary lists the accepted SHA-256 of the cocoon-host executable, as the
	// host-binary event of the event log measures it.
	HostBinary []string `json:"host_binary,omitempty"`
	// Models lists the accepted model identities, as the model event measures them
	// ("sha256:<hex>" of the model file for the embedded engine).
	Models []string `json:"models,omitempty"`
	// SettlementKeys lists the accepted settlement keys (64 hex digits, an ed25519
	// public key), as the settlement-key event measures them: pin it to be sure receipts
	// and escrow charges come from a known host.
	SettlementKeys []string `json:"settlement_keys,omitempty"`
	// Sealing lists the accepted sources of the host's root sealing secret, as the
	// sealing event measures them: "file" (a TD-private secret the TD image provisions),
	// "sim" (on the data disk: protects nothing) or "none" (the host persists no
	// secret). A production policy lists ["file"].
	Sealing []string `json:"sealing,omitempty"`
	// SettlementKeyOrigins lists the accepted origins of the settlement key, as the
	// settlement-key-origin event measures them: "generated" (inside the host, only
	// ever stored sealed) or "imported" (kept in plain text on the data disk by an
	// earlier version: its operator may know it). Pin ["generated"] to refuse the
	// latter.
	SettlementKeyOrigins []string `json:"settlement_key_origins,omitempty"`
	// ABIVersion is the module ABI version the host must measure; 0 allows any.
	ABIVersion uint32 `json:"abi_version,omitempty"`
	// MinTCBStatus is the least TCB status accepted, in the order of the TCB
	// constants (TCBUpToDate best). It needs Intel's collateral
	// (EvidenceOptions.Collateral), and refuses simulated evidence, which has none.
	// Empty or "any" accepts any status, and a quote whose status is not evaluated.
	MinTCBStatus string `json:"min_tcb_status,omitempty"`
	// TrustSimRoot is the simulator root certificate to trust: PEM text, or the path of
	// a PEM file (relative to the policy file in LoadPolicy). Empty refuses simulated
	// evidence. Never set it for a production host: anyone can run a simulator.
	TrustSimRoot string `json:"trust_sim_root,omitempty"`
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

// LoadPolicy reads and parses the policy file at path. A relative trust_sim_root path is
// made relative to the file's directory.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if p.TrustSimRoot != "" && !isPEM(p.TrustSimRoot) && !filepath.IsAbs(p.TrustSimRoot) {
		p.TrustSimRoot = filepath.Join(filepath.Dir(path), p.TrustSimRoot)
	}
	return p, nil
}

func (p *Policy) check() error {
	for _, m := range []struct {
		name   string
		values []string
	}{{"mrtd", p.MRTD}, {"rtmr0", p.RTMR0}, {"rtmr1", p.RTMR1}, {"rtmr2", p.RTMR2}} {
		for _, v := range m.values {
			if _, err := decodeHex(v, 48); err != nil {
				return fmt.Errorf("%s %q: want 96 lowercase hex digits (a SHA-384 measurement): %v", m.name, v, err)
			}
		}
	}
	for _, v := range p.HostBinary {
		if err := checkSHA256Identity(v); err != nil {
			return fmt.Errorf("host_binary: %v", err)
		}
	}
	for _, v := range p.Models {
		if err := (Event{Type: EventModel, Data: []byte(v)}).Validate(); err != nil {
			return fmt.Errorf("models %q: %v", v, err)
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
	if p.MinTCBStatus != "" && p.MinTCBStatus != TCBAny && !slices.Contains(tcbOrder, p.MinTCBStatus) {
		return fmt.Errorf("min_tcb_status %q: want %q or one of %s", p.MinTCBStatus, TCBAny, strings.Join(tcbOrder, ", "))
	}
	return nil
}

// SimRoot returns the certificate TrustSimRoot names, or nil when it is empty.
func (p *Policy) SimRoot() (*x509.Certificate, error) {
	if p.TrustSimRoot == "" {
		return nil, nil
	}
	b := []byte(p.TrustSimRoot)
	if !isPEM(p.TrustSimRoot) {
		var err error
		if b, err = os.ReadFile(p.TrustSimRoot); err != nil {
			return nil, fmt.Errorf("%w: trust_sim_root: %v", ErrPolicy, err)
		}
	}
	c, err := ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%w: trust_sim_root: %v", ErrPolicy, err)
	}
	return c, nil
}

func isPEM(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") }

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
