// Package nvidia verifies an NVIDIA GPU's attestation evidence, offline: the SPDM 1.1
// GET_MEASUREMENTS report a Hopper-class GPU signs with its device key, the device's
// certificate chain, and the measurements it reports against NVIDIA's Reference
// Integrity Manifests (RIMs: SWID tags signed with XML-DSig).
//
// Verify checks, each on its own line (Check): the report's format; the certificate
// chain to NVIDIA's device identity root (embedded, pinned); the report's ECDSA P-384
// signature over the SPDM transcript (request || response up to the signature); the
// nonce the verifier chose; the firmware ID of the signed report against the one in the
// device certificate; the driver and VBIOS RIMs' signatures to NVIDIA's RIM root
// (embedded, pinned); the driver and VBIOS versions of the report against the RIMs'; and
// every measurement the RIMs mark active against the RIM's alternatives.
//
// What a reviewer must still trust: NVIDIA's two roots and the keys under them (a GPU
// whose device key leaked can sign anything); NVIDIA's RIMs saying what a good driver
// and VBIOS measure; the driver on the host, which loads the GPU firmware the driver
// RIM describes and fetches the report (the report binds the GPU's state, not what the
// host process does with the GPU); and that no certificate was revoked: revocation
// (NVIDIA's OCSP service) is not checked offline, so a revoked device certificate or RIM
// signer passes. A Hopper report carries no signed CC mode (Report.CCMode is empty):
// whether the GPU runs in confidential-computing mode is, for such GPUs, the host's word.
//
// RIMs are collateral, the same for every GPU with a driver or VBIOS: a verifier
// verifies them once, when it loads them (ParseRIM), and gives them to every Verify
// (VerifyOptions.LoadedDriverRIM), which then spends no public-key operation on them. A
// Cache given to Verify remembers the chains and RIMs that verified, so that a GPU seen
// before costs one P-384 verification. The report's, the RIMs' and each chain leaf's
// ECDSA P-384 signatures are verified with circl's P-384 (p384.go: variable time, about
// half of crypto/ecdsa's cost; all inputs are public), the rest of each chain by
// crypto/x509 (chain.go). Sim is a simulated GPU whose evidence takes
// the same path under its own roots, which verifiers refuse unless given them. The
// formats are in attest/README.md, "GPU evidence".
package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// nvidiaDeviceRootPEM is NVIDIA's device identity root ("NVIDIA Device Identity CA",
// P-384, SHA-256 fingerprint
// 102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48), and
// nvidiaRIMRootPEM NVIDIA's RIM root ("NVIDIA CoRIM signing Root CA", P-384, SHA-256
// 12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1): the files
// verifier_device_root.pem and verifier_RIM_root.pem of NVIDIA's local GPU verifier
// (github.com/NVIDIA/nvtrust, guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/
// certs, BSD-3-Clause).
var (
	//go:embed nvidia-device-root.pem
	nvidiaDeviceRootPEM []byte
	//go:embed nvidia-rim-root.pem
	nvidiaRIMRootPEM []byte
)

// Errors of GPU evidence verification, one per reason; the errors of Verify, ParseReport
// and ParseRIM wrap exactly one. Their messages hold nothing secret: evidence is public.
var (
	ErrReport        = errors.New("nvidia: malformed GPU attestation report")
	ErrCertChain     = errors.New("nvidia: invalid certificate chain")
	ErrUntrustedRoot = errors.New("nvidia: certificate chain does not lead to a trusted root")
	ErrSignature     = errors.New("nvidia: the GPU report's signature does not verify with the device key")
	ErrNonce         = errors.New("nvidia: the GPU report is not bound to the nonce")
	ErrFWID          = errors.New("nvidia: the GPU report's firmware ID is not the device certificate's")
	ErrRIM           = errors.New("nvidia: malformed or unacceptable reference integrity manifest")
	ErrRIMSignature  = errors.New("nvidia: the RIM's signature does not verify")
	ErrVersion       = errors.New("nvidia: the GPU runs another version than the RIM describes")
	ErrMeasurement   = errors.New("nvidia: a GPU measurement matches none of the RIM's values")
	ErrNotChecked    = errors.New("nvidia: not checked")
)

// pinnedPool parses an embedded root into a pool of its own.
func pinnedPool(pemBytes []byte) func() *x509.CertPool {
	return sync.OnceValue(func() *x509.CertPool {
		c, err := parseChain(pemBytes)
		if err != nil || len(c) != 1 {
			panic(fmt.Sprintf("nvidia: embedded root: %v", err))
		}
		pool := x509.NewCertPool()
		pool.AddCert(c[0])
		return pool
	})
}

var (
	deviceRoots = pinnedPool(nvidiaDeviceRootPEM)
	rimRoots    = pinnedPool(nvidiaRIMRootPEM)
	// nvidiaDeviceRootKey is the pinned device root's key: a chain is NVIDIA's when it
	// ends at that key, whatever a root the caller trusts is named.
	nvidiaDeviceRootKey = sync.OnceValue(func() *ecdsa.PublicKey {
		c, _ := parseChain(nvidiaDeviceRootPEM)
		return c[0].PublicKey.(*ecdsa.PublicKey)
	})
)

// NVIDIARoots returns NVIDIA's pinned device identity root and RIM root, PEM.
func NVIDIARoots() (device, rim []byte) {
	return bytes.Clone(nvidiaDeviceRootPEM), bytes.Clone(nvidiaRIMRootPEM)
}

// Evidence is what a host serves per GPU: the SPDM GET_MEASUREMENTS request and response
// (request || response, raw bytes, as in NVIDIA's hopperAttestationReport.txt once
// hex-decoded) and the GPU's certificate chain (PEM, leaf first, as the driver returns it).
type Evidence struct {
	Report    []byte `json:"report"`
	CertChain []byte `json:"cert_chain"`
}

// MaxCertChainSize and maxChainCerts bound a served certificate chain (NVIDIA's is
// five certificates, under 5 KiB of PEM).
const (
	MaxCertChainSize = 64 << 10
	maxChainCerts    = 8
)

// Identity is what evidence says about the GPU, for the event log and the policy.
type Identity struct {
	// ChainSHA256 is the SHA-256 of the DER certificates of the evidence's chain, in
	// the order served (leaf first), concatenated.
	ChainSHA256 [32]byte
	// DriverVersion, VBIOSVersion and CCMode are the report's (see Report).
	DriverVersion, VBIOSVersion string
	CCMode                      string
	// Simulated is set by Verify when the device chain ends at a root whose key is not
	// NVIDIA's (a simulator's the caller trusted), whatever the root is named.
	Simulated bool
}

// IdentityOf reads the identity of evidence without verifying anything, for the host
// that measures its own GPU's identity into its event log: a verifier gets the same
// identity from Verify, checked. It fails when the chain or the report does not parse.
func IdentityOf(ev Evidence) (Identity, error) {
	certs, err := parseChain(ev.CertChain)
	if err != nil {
		return Identity{}, err
	}
	rep, err := ParseReport(ev.Report)
	if err != nil {
		return Identity{}, err
	}
	return identity(certs, rep), nil
}

func identity(certs []*x509.Certificate, rep *Report) Identity {
	h := sha256.New()
	for _, c := range certs {
		h.Write(c.Raw)
	}
	id := Identity{DriverVersion: rep.DriverVersion, VBIOSVersion: rep.VBIOSVersion, CCMode: rep.CCMode}
	h.Sum(id.ChainSHA256[:0])
	return id
}

// Check is one line of the GPU's verification report, like attest.Check.
type Check struct {
	// Name says what was checked ("GPU report signature").
	Name string
	// OK is false when the check failed or could not run: the evidence must not be
	// trusted.
	OK bool
	// Detail explains the result for a human reviewer.
	Detail string
}

// The names of Verify's checks, in the order it returns them.
const (
	CheckFormat        = "GPU report format"
	CheckChain         = "GPU certificate chain"
	CheckSignature     = "GPU report signature"
	CheckNonce         = "GPU nonce"
	CheckFWID          = "GPU firmware ID"
	CheckDriverRIM     = "GPU driver RIM"
	CheckVBIOSRIM      = "GPU VBIOS RIM"
	CheckDriverVersion = "GPU driver version"
	CheckVBIOSVersion  = "GPU VBIOS version"
	CheckMeasurements  = "GPU measurements"
	nvdecDisabled      = 0x55 // opaque NVDEC0 status: the video decoder is disabled
	nvdecMeasurement   = 35   // the measurement of the video decoder's firmware
)

// oidFWIDExtension is the device certificate extension that names the firmware ID (a
// TCG DICE arc), oidSHA384 the digest algorithm of that ID.
var (
	oidFWIDExtension = asn1.ObjectIdentifier{2, 23, 133, 5, 4, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
)

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
	// LoadedDriverRIM and LoadedVBIOSRIM are the RIMs for the report's driver and
	// VBIOS, verified once, when the verifier loaded them (ParseRIM, with Roots
	// RIMRoots): RIMs are collateral, the same for every GPU with that driver or VBIOS,
	// so a verifier verifies them when it loads them, as Intel's TCB info, and each
	// report is compared with them at no public-key cost. One is used only if ParseRIM
	// made it under RIMRoots and its signing chain is valid at Now; otherwise its check
	// fails (ErrRIM, ErrCertChain). When set, DriverRIM or VBIOSRIM and RIMSource are
	// not consulted for it.
	LoadedDriverRIM, LoadedVBIOSRIM *RIM
	// DriverRIM and VBIOSRIM are the RIM files for the report's driver and VBIOS
	// (cached, or fetched by the caller), verified by this call (or found in Cache).
	// A missing one is fetched from RIMSource, or fails its check and the measurements
	// check.
	DriverRIM, VBIOSRIM []byte
	// RIMSource, when set, serves the RIMs not given above: Verify derives their ids
	// from the report (RIMIDs) once its signature verified, and gets them at
	// RIMServiceURL + id. A fetched RIM is verified exactly as a given one.
	RIMSource RIMSource
	// Cache, when set, remembers verified chains and RIMs across calls (see Cache).
	Cache *Cache
}

// verification accumulates Verify's checks.
type verification struct {
	checks []Check
	failed map[string]bool
	err    error
}

// run records check name: unless one of after failed, f runs and its error (or nil,
// with the detail it returns) makes the line.
func (v *verification) run(name string, after []string, f func() (string, error)) {
	for _, dep := range after {
		if v.failed[dep] {
			v.add(name, "", fmt.Errorf("%w: %s failed", ErrNotChecked, dep))
			return
		}
	}
	detail, err := f()
	v.add(name, detail, err)
}

func (v *verification) add(name, detail string, err error) {
	if err != nil {
		v.failed[name] = true
		detail = err.Error()
		if v.err == nil {
			v.err = fmt.Errorf("%s: %w", name, err)
		}
	}
	v.checks = append(v.checks, Check{Name: name, OK: err == nil, Detail: detail})
}

// Verify checks a GPU's evidence against nonce, the checks the package comment lists,
// and returns the GPU's identity and one Check per step, in the order of the Check*
// names. A step whose inputs failed is not run and fails with ErrNotChecked (no field of
// a report whose signature failed is compared with anything). The error is nil when
// every check passed, else it names the first that failed and wraps its Err value; the
// identity is meaningful only then. Inactive RIM measurements, and measurement 35 when
// the signed opaque data says the video decoder is disabled (as NVIDIA's verifier does),
// are not compared. Cost: one P-384 verification per certificate of the device chain
// below its root (the leaf's by circl, the others by crypto/x509: one and none for the
// simulator, one and three for NVIDIA's sample) and the report's (circl); RIMs given as
// files add each one's XML-DSig (circl) and their signing chain's, verified once when
// both carry the same, as NVIDIA's do (ten in all for NVIDIA's sample, five for the
// simulator, BenchmarkVerifyNVIDIA); loaded RIMs add none; with opts.Cache warm, the
// report's one (BenchmarkVerifyNVIDIACached). With opts.RIMSource, a RIM not given costs
// a RIMSource.Get more (a network round trip online).
func Verify(ev Evidence, nonce [32]byte, opts VerifyOptions) (Identity, []Check, error) {
	v := &verification{failed: map[string]bool{}}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	var (
		rep          *Report
		signed, sig  []byte
		certs, chain []*x509.Certificate
		id           Identity
	)
	cached, chainCached := opts.Cache.chain(opts.DeviceRoots, ev.CertChain, opts.Now)
	v.run(CheckFormat, nil, func() (string, error) {
		var err error
		certs = cached.certs
		if !chainCached {
			if certs, err = parseChain(ev.CertChain); err != nil {
				return "", err
			}
		}
		if signed, sig, rep, err = parseReport(ev.Report); err != nil {
			return "", err
		}
		id = identity(certs, rep)
		return fmt.Sprintf("SPDM %d.%d GET_MEASUREMENTS, %d measurements, driver %s, VBIOS %s, %d certificates",
			rep.SPDMVersion>>4, rep.SPDMVersion&0xF, len(rep.Measurements), rep.DriverVersion, rep.VBIOSVersion, len(certs)), nil
	})
	v.run(CheckChain, []string{CheckFormat}, func() (string, error) {
		chain = cached.chain
		if !chainCached {
			var err error
			if chain, err = verifyChain(certs, opts.DeviceRoots, deviceRoots, opts.Now); err != nil {
				return "", err
			}
			opts.Cache.putChain(opts.DeviceRoots, ev.CertChain, certs, chain)
		}
		root := chain[len(chain)-1]
		rootKey, isECDSA := root.PublicKey.(*ecdsa.PublicKey)
		id.Simulated = !isECDSA || !rootKey.Equal(nvidiaDeviceRootKey())
		detail := fmt.Sprintf("%q chains to %q", chain[0].Subject.CommonName, root.Subject.CommonName)
		if id.Simulated {
			detail += " (not NVIDIA's root: simulated, trusted because the caller gave it)"
		}
		return detail, nil
	})
	v.run(CheckSignature, []string{CheckChain}, func() (string, error) {
		h := sha512.Sum384(signed)
		if !ecdsaVerify(chain[0].PublicKey.(*ecdsa.PublicKey), h[:], sig) {
			return "", ErrSignature
		}
		return fmt.Sprintf("ECDSA P-384 over SHA-384 of request || response (%d bytes)", len(signed)), nil
	})
	signedBy := []string{CheckSignature}
	v.run(CheckNonce, signedBy, func() (string, error) {
		if rep.Nonce != nonce {
			return "", fmt.Errorf("%w: the report carries %x, want %x", ErrNonce, rep.Nonce, nonce)
		}
		return fmt.Sprintf("%x", nonce), nil
	})
	v.run(CheckFWID, signedBy, func() (string, error) { return checkFWID(chain[0], rep.FWID) })
	var (
		driverRIM, vbiosRIM *RIM
		driverID, vbiosID   string
		idErr               error
	)
	if !v.failed[CheckFormat] {
		driverID, vbiosID, idErr = RIMIDs(rep)
	}
	rimOpts := RIMOptions{Roots: opts.RIMRoots, Now: opts.Now}.SharingSigners()
	for _, r := range []struct {
		name, kind, id string
		loaded         *RIM
		given          []byte
		rim            **RIM
	}{{CheckDriverRIM, "driver", driverID, opts.LoadedDriverRIM, opts.DriverRIM, &driverRIM},
		{CheckVBIOSRIM, "VBIOS", vbiosID, opts.LoadedVBIOSRIM, opts.VBIOSRIM, &vbiosRIM}} {
		if r.loaded != nil {
			v.run(r.name, nil, func() (string, error) {
				if err := r.loaded.usableUnder(opts.RIMRoots, opts.Now); err != nil {
					return "", err
				}
				*r.rim = r.loaded
				return rimDetail(r.loaded) + ", verified when loaded", nil
			})
			continue
		}
		if len(r.given) > 0 || opts.RIMSource == nil {
			v.run(r.name, nil, func() (string, error) {
				var err error
				*r.rim, err = parseGivenRIM(r.kind, r.id, r.given, rimOpts, opts.Cache)
				return rimDetail(*r.rim), err
			})
			continue
		}
		// Fetched only for a report the GPU signed: unsigned bytes never choose what a
		// verifier asks the RIM service for.
		v.run(r.name, signedBy, func() (string, error) {
			if idErr != nil {
				return "", idErr
			}
			b, err := fetchRIM(opts.RIMSource, r.id)
			if err != nil {
				return "", err
			}
			if *r.rim, err = opts.Cache.rim(b, rimOpts); err != nil {
				return "", fmt.Errorf("RIM %s from %s: %w", r.id, RIMServiceURL+r.id, err)
			}
			return rimDetail(*r.rim) + ", fetched as " + r.id, nil
		})
	}
	v.run(CheckDriverVersion, []string{CheckSignature, CheckDriverRIM}, func() (string, error) {
		return sameVersion(rep.DriverVersion, driverRIM.Version)
	})
	v.run(CheckVBIOSVersion, []string{CheckSignature, CheckVBIOSRIM}, func() (string, error) {
		return sameVersion(rep.VBIOSVersion, vbiosRIM.Version)
	})
	v.run(CheckMeasurements, []string{CheckSignature, CheckDriverRIM, CheckVBIOSRIM}, func() (string, error) {
		return compareMeasurements(rep, driverRIM, vbiosRIM)
	})
	return id, v.checks, v.err
}

// parseChain parses a PEM chain (leaf first): only CERTIFICATE blocks, nothing but
// whitespace around them, 1 to maxChainCerts of them, at most MaxCertChainSize bytes.
func parseChain(b []byte) ([]*x509.Certificate, error) {
	if len(b) > MaxCertChainSize {
		return nil, fmt.Errorf("%w: %d bytes of PEM, at most %d", ErrCertChain, len(b), MaxCertChainSize)
	}
	var certs []*x509.Certificate
	for rest := bytes.TrimSpace(b); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		// pem.Decode skips text before a block; a chain must not hide any.
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("%w: the chain holds something other than PEM certificates", ErrCertChain)
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			return nil, fmt.Errorf("%w: the chain holds something other than PEM certificates", ErrCertChain)
		}
		if len(certs) == maxChainCerts {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrCertChain, maxChainCerts)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrCertChain, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrCertChain)
	}
	return certs, nil
}

// fwidExtension is the value of the device certificate's extension 2.23.133.5.4.1 as
// NVIDIA's GPUs carry it: a version, the device's public key, and the firmware ID as a
// digest with its algorithm.
type fwidExtension struct {
	Version int
	Key     asn1.RawValue
	FWID    struct {
		Algorithm asn1.ObjectIdentifier
		Digest    []byte
	}
}

// checkFWID compares the report's firmware ID with the one in leaf's extension: the
// certificate the GPU's firmware was provisioned with names the firmware that may use
// its key.
func checkFWID(leaf *x509.Certificate, reported []byte) (string, error) {
	for _, ext := range leaf.Extensions {
		if !ext.Id.Equal(oidFWIDExtension) {
			continue
		}
		var v fwidExtension
		if rest, err := asn1.Unmarshal(ext.Value, &v); err != nil || len(rest) != 0 {
			return "", fmt.Errorf("%w: the device certificate's FWID extension does not parse", ErrFWID)
		}
		if !v.FWID.Algorithm.Equal(oidSHA384) || len(v.FWID.Digest) != sha512.Size384 {
			return "", fmt.Errorf("%w: the device certificate's FWID is not a SHA-384 digest", ErrFWID)
		}
		if !bytes.Equal(v.FWID.Digest, reported) {
			return "", fmt.Errorf("%w: report %x, certificate %x", ErrFWID, reported, v.FWID.Digest)
		}
		return fmt.Sprintf("%x", reported), nil
	}
	return "", fmt.Errorf("%w: the device certificate carries no FWID extension", ErrFWID)
}

// parseGivenRIM is ParseRIM, through cache, with a failure for a RIM the caller did
// not give, naming its id (when the report gave one) and URL.
func parseGivenRIM(kind, id string, b []byte, opts RIMOptions, cache *Cache) (*RIM, error) {
	if len(b) == 0 && id != "" {
		return nil, fmt.Errorf("%w: no %s RIM given, nor a source to fetch %s from (%s%s): verify online, or offline with a collateral file saved online", ErrRIM, kind, id, RIMServiceURL, id)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: no %s RIM given", ErrRIM, kind)
	}
	return cache.rim(b, opts)
}

func rimDetail(r *RIM) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%s version %s, signed by %q under %q", r.Name, r.Version,
		r.Signer[0].Subject.CommonName, r.Signer[len(r.Signer)-1].Subject.CommonName)
}

// sameVersion compares a reported version with a RIM's; VBIOS versions are hex, which
// NVIDIA's RIMs spell in capitals and its tools in either case.
func sameVersion(reported, rim string) (string, error) {
	if reported == "" || !strings.EqualFold(reported, rim) {
		return "", fmt.Errorf("%w: the report says %q, the RIM is for %q", ErrVersion, reported, rim)
	}
	return reported, nil
}

// compareMeasurements checks every active measurement of the two RIMs against the
// report: an index active in both RIMs is refused (the RIMs disagree on who measures
// it), a missing measurement or one equal to no alternative fails.
func compareMeasurements(rep *Report, driver, vbios *RIM) (string, error) {
	golden := map[int]RIMMeasurement{}
	for _, rim := range []*RIM{driver, vbios} {
		for i, m := range rim.Measurements {
			if !m.Active {
				continue
			}
			if _, dup := golden[i]; dup {
				return "", fmt.Errorf("%w: the driver and VBIOS RIMs both measure index %d", ErrMeasurement, i)
			}
			golden[i] = m
		}
	}
	skipNVDEC := bytes.Equal(rep.Opaque[opaqueNVDEC0Status], []byte{nvdecDisabled})
	var mismatched []int
	compared := 0
	for _, i := range slices.Sorted(maps.Keys(golden)) {
		if i == nvdecMeasurement && skipNVDEC {
			continue
		}
		compared++
		got, ok := rep.Measurements[i]
		if !ok || !slices.ContainsFunc(golden[i].Alternatives, func(alt []byte) bool { return bytes.Equal(alt, got) }) {
			mismatched = append(mismatched, i)
		}
	}
	if len(mismatched) > 0 {
		return "", fmt.Errorf("%w: %d of %d active measurements differ, at indices %v", ErrMeasurement, len(mismatched), compared, mismatched)
	}
	detail := fmt.Sprintf("%d active measurements match the RIMs", compared)
	if _, ok := golden[nvdecMeasurement]; ok && skipNVDEC {
		detail += fmt.Sprintf("; %d not compared: the video decoder is disabled", nvdecMeasurement)
	}
	return detail, nil
}
