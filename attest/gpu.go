package attest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// GPU provider modes, as GPUProvider.Mode reports them and `cocoon-host serve --gpu`
// names them.
const (
	GPUModeNone = "none"
	GPUModeSim  = "sim"
	GPUModeNVML = "nvml"
)

// gpuNonceDomain separates the GPU nonce from every other digest of the project.
const gpuNonceDomain = "cocoon-host gpu nonce v1"

// GPU identity bounds, enforced by the gpus event's encoding: a host attests at most
// maxGPUs GPUs, and a version or mode is short printable ASCII.
const (
	maxGPUs         = 16
	maxGPUTextBytes = 64
)

// GPUNonce returns the 32-byte nonce every GPU report served with a quote answers: the
// SHA-256 of the domain-separated, length-prefixed REPORTDATA of that quote,
//
//	SHA-256( lp("cocoon-host gpu nonce v1") || lp(reportData, 64) )
//
// with lp as in BootReportData. REPORTDATA binds the client's nonce (fresh boot and
// pipeline evidence) and the host's keys, so a GPU report that answers this nonce was
// made after the client asked and for this quote: it cannot be replayed from another
// request, nor served with another host's quote. The hash cannot go the other way (the
// GPU reports are not in REPORTDATA), since the GPU nonce must be known before the GPU
// is asked.
func GPUNonce(reportData [64]byte) [32]byte {
	h := sha256.New()
	writeFields(h, []byte(gpuNonceDomain), reportData[:])
	return [32]byte(h.Sum(nil))
}

// GPUProvider obtains attestation reports from the GPUs a host uses: SPDM
// GET_MEASUREMENTS reports signed by each GPU's device key, with the device's
// certificate chain. NoGPU, NewSimGPU and the NVML provider (package attest/gpu)
// implement it.
type GPUProvider interface {
	// Mode names the provider: GPUModeNone, GPUModeSim or GPUModeNVML.
	Mode() string
	// Evidence returns one report per GPU, in the same order on every call, each over
	// nonce. It talks to the GPUs (milliseconds to tens of ms each on hardware): keep
	// it off the request path, as quotes are.
	Evidence(ctx context.Context, nonce [32]byte) ([]nvidia.Evidence, error)
}

// NoGPU is the GPUProvider of a host that attests no GPU (`serve --gpu none`): its
// event log measures "none" in the gpus event, and its evidence carries no GPU report.
// A policy with require_gpu refuses it.
type NoGPU struct{}

// Mode implements GPUProvider.
func (NoGPU) Mode() string { return GPUModeNone }

// Evidence implements GPUProvider: no GPU, no report.
func (NoGPU) Evidence(context.Context, [32]byte) ([]nvidia.Evidence, error) { return nil, nil }

// GPUIdentity is what the gpus event measures of one GPU, and what a verified report
// must say of it.
type GPUIdentity struct {
	// ChainSHA256 is the SHA-256 of the DER certificates of the GPU's device chain, leaf
	// first, concatenated (nvidia.Identity.ChainSHA256).
	ChainSHA256 [32]byte
	// DriverVersion and VBIOSVersion are as the report's opaque data states them.
	DriverVersion, VBIOSVersion string
	// CCMode is the confidential-computing mode the signed report states ("spt",
	// "mpt", "ppcie": single GPU, multi-GPU, protected PCIe), or "" when it states
	// none (Hopper reports do not).
	CCMode string
}

// String renders the identity as the report shows it:
// "sha256:<chain hex> driver <v> vbios <v> cc <mode>" ("cc unknown" when empty).
func (g GPUIdentity) String() string {
	return fmt.Sprintf("sha256:%x driver %s vbios %s cc %s", g.ChainSHA256, g.DriverVersion, g.VBIOSVersion, ccModeName(g.CCMode))
}

// ccModeUnknown names the CC mode of a report that states none, in report lines and in
// the policy's gpu_cc_modes.
const ccModeUnknown = "unknown"

// ccModeName returns mode, or ccModeUnknown when it is empty.
func ccModeName(mode string) string { return cmp.Or(mode, ccModeUnknown) }

// gpuIdentityOf returns the identity nvidia.Verify established.
func gpuIdentityOf(id nvidia.Identity) GPUIdentity {
	return GPUIdentity{ChainSHA256: id.ChainSHA256, DriverVersion: id.DriverVersion, VBIOSVersion: id.VBIOSVersion, CCMode: id.CCMode}
}

// readGPUIdentity reads a GPU's identity from its evidence without checking any
// signature (nvidia.IdentityOf): the host measures it at boot, and a verifier compares
// it with the identity nvidia.Verify establishes. It fails when the report or the chain
// does not parse, or a version or mode is not one the gpus event can carry.
func readGPUIdentity(ev nvidia.Evidence) (GPUIdentity, error) {
	nid, err := nvidia.IdentityOf(ev)
	if err != nil {
		return GPUIdentity{}, err
	}
	id := gpuIdentityOf(nid)
	if _, err := decodeGPUIdentities(GPUsEvent([]GPUIdentity{id}).Data); err != nil {
		return GPUIdentity{}, err
	}
	return id, nil
}

// GPUsEvent measures the identities of the GPUs a host attests, in the order its
// evidence serves their reports; none for a host that attests no GPU. Its data:
//
//	u32be(n) || n × ( ChainSHA256 (32 bytes) || lp(driver) || lp(vbios) || lp(cc mode) )
//
// with lp as in BootReportData, n at most 16, driver and VBIOS versions 1 to 64
// characters and the CC mode 0 to 64, each of letters, digits and ".-_+".
func GPUsEvent(gpus []GPUIdentity) Event {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(gpus)))
	for _, g := range gpus {
		data = append(data, g.ChainSHA256[:]...)
		for _, s := range []string{g.DriverVersion, g.VBIOSVersion, g.CCMode} {
			data = binary.BigEndian.AppendUint32(data, uint32(len(s)))
			data = append(data, s...)
		}
	}
	return Event{Type: EventGPUs, Data: data}
}

// decodeGPUIdentities decodes a gpus event's data strictly: the count, every field
// within its bounds, nothing left over.
func decodeGPUIdentities(b []byte) ([]GPUIdentity, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%d bytes, want at least a 4-byte count", len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxGPUs {
		return nil, fmt.Errorf("%d GPUs, at most %d", n, maxGPUs)
	}
	b = b[4:]
	ids := make([]GPUIdentity, n)
	for i := range ids {
		if len(b) < 32 {
			return nil, fmt.Errorf("GPU %d: truncated chain hash", i)
		}
		ids[i].ChainSHA256 = [32]byte(b[:32])
		b = b[32:]
		for j, field := range []*string{&ids[i].DriverVersion, &ids[i].VBIOSVersion, &ids[i].CCMode} {
			if len(b) < 4 || uint64(binary.BigEndian.Uint32(b)) > uint64(len(b)-4) {
				return nil, fmt.Errorf("GPU %d: truncated field %d", i, j)
			}
			l := binary.BigEndian.Uint32(b)
			s := string(b[4 : 4+l])
			b = b[4+l:]
			if err := checkGPUText(s, j < 2); err != nil {
				return nil, fmt.Errorf("GPU %d: %s %q: %v", i, [...]string{"driver version", "VBIOS version", "CC mode"}[j], s, err)
			}
			*field = s
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last GPU", len(b))
	}
	return ids, nil
}

// checkGPUText checks a version or mode: at most maxGPUTextBytes of letters, digits and
// ".-_+", not empty when required. Nothing else may reach a report line or a policy.
func checkGPUText(s string, required bool) error {
	switch {
	case required && s == "":
		return errors.New("empty")
	case len(s) > maxGPUTextBytes:
		return fmt.Errorf("%d bytes, at most %d", len(s), maxGPUTextBytes)
	case strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+") != "":
		return errors.New("only letters, digits and .-_+")
	}
	return nil
}

// gpuIdentitiesText renders a gpus event's identities: "none", or each identity, in
// order, joined by "; ".
func gpuIdentitiesText(ids []GPUIdentity) string {
	if len(ids) == 0 {
		return "none"
	}
	parts := make([]string, len(ids))
	for i, g := range ids {
		parts[i] = g.String()
	}
	return strings.Join(parts, "; ")
}

// Files NewSimGPU writes into its directory, for verifiers of its evidence.
const (
	// SimGPURootsFile holds the simulated GPU's two roots, PEM: the device root, then
	// the RIM root (what --trust-sim-gpu-root and the policy's trust_sim_gpu_root take).
	SimGPURootsFile = "sim-gpu-roots.pem"
	// SimGPUDriverRIMFile and SimGPUVBIOSRIMFile are the RIMs its reports match, signed
	// by its RIM root (the policy's gpu_driver_rim and gpu_vbios_rim).
	SimGPUDriverRIMFile = "sim-gpu-driver-rim.xml"
	SimGPUVBIOSRIMFile  = "sim-gpu-vbios-rim.xml"
	// simGPUDir is the subdirectory nvidia.NewSim keeps the simulated GPU's keys in.
	simGPUDir = "sim-gpu"
)

// SimGPU is a simulated NVIDIA GPU (nvidia.Sim) as a GPUProvider: one GPU whose reports
// have NVIDIA's formats and chain to a local root no verifier trusts unless told to,
// as Sim does for TDX. It is safe for concurrent use as far as nvidia.Sim is.
type SimGPU struct {
	sim *nvidia.Sim
}

// NewSimGPU loads or creates the simulated GPU's keys under dir (in dir/sim-gpu) and
// writes SimGPURootsFile, SimGPUDriverRIMFile and SimGPUVBIOSRIMFile into dir, so a
// verifier can be pointed at them. Cost: what nvidia.NewSim costs, and three small
// file writes.
func NewSimGPU(dir string) (*SimGPU, error) {
	sim, err := nvidia.NewSim(filepath.Join(dir, simGPUDir))
	if err != nil {
		return nil, fmt.Errorf("simulated GPU: %w", err)
	}
	device, rim := sim.Roots()
	driverRIM, vbiosRIM := sim.RIMs()
	for name, b := range map[string][]byte{SimGPURootsFile: append(append([]byte(nil), device...), rim...),
		SimGPUDriverRIMFile: driverRIM, SimGPUVBIOSRIMFile: vbiosRIM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, fmt.Errorf("simulated GPU: %w", err)
		}
	}
	return &SimGPU{sim: sim}, nil
}

// Mode implements GPUProvider.
func (*SimGPU) Mode() string { return GPUModeSim }

// Evidence implements GPUProvider: the simulated GPU's report over nonce. Cost: one
// ECDSA P-384 signature.
func (s *SimGPU) Evidence(ctx context.Context, nonce [32]byte) ([]nvidia.Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ev, err := s.sim.Evidence(nonce)
	if err != nil {
		return nil, err
	}
	return []nvidia.Evidence{ev}, nil
}

// SimGPURoots are a simulated GPU's roots, which a verifier trusts only when told to.
// Use it by pointer: the pools it builds once are what an nvidia.Cache knows verified
// chains and RIMs by.
type SimGPURoots struct {
	// Device is the root the device certificate chain ends at; RIM the root its RIMs
	// are signed under.
	Device, RIM *x509.Certificate

	once                sync.Once
	devicePool, rimPool *x509.CertPool
}

// pools returns a pool of Device alone and a pool of RIM alone, the same ones on every
// call.
func (r *SimGPURoots) pools() (device, rim *x509.CertPool) {
	r.once.Do(func() {
		r.devicePool, r.rimPool = x509.NewCertPool(), x509.NewCertPool()
		r.devicePool.AddCert(r.Device)
		r.rimPool.AddCert(r.RIM)
	})
	return r.devicePool, r.rimPool
}

// ParseSimGPURoots parses what SimGPURootsFile holds: exactly two PEM certificates, the
// device root then the RIM root.
func ParseSimGPURoots(b []byte) (*SimGPURoots, error) {
	var certs []*x509.Certificate
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if block.Type != "CERTIFICATE" || err != nil {
			return nil, fmt.Errorf("simulated GPU roots: PEM block %d is not a certificate", len(certs)+1)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("simulated GPU roots: %d certificates, want 2 (the device root, then the RIM root)", len(certs))
	}
	return &SimGPURoots{Device: certs[0], RIM: certs[1]}, nil
}

// gpuVerification is what VerifyEvidence verifies GPU reports with: the policy's RIMs
// (loaded, or to verify in this call), or the collateral source to fetch them from, and
// roots (NVIDIA's, or a simulated GPU's when trusted).
type gpuVerification struct {
	opts       nvidia.VerifyOptions
	simTrusted bool
}

// newGPUVerification resolves the GPU roots and RIMs of p and opts: opts.GPURIMs when
// given (they must have been loaded for p's RIM members and the same roots), else p's
// RIM files, which nvidia.Verify then verifies (once per opts.GPUCache).
func newGPUVerification(p *Policy, opts EvidenceOptions, now time.Time) (*gpuVerification, error) {
	// The collateral source also serves the RIMs the policy does not give: online it
	// fetches them from NVIDIA's RIM service and records them with Intel's collateral,
	// offline it replays them from the saved file.
	v := &gpuVerification{opts: nvidia.VerifyOptions{Now: now, Cache: opts.GPUCache}}
	if opts.Collateral != nil {
		v.opts.RIMSource = opts.Collateral
	}
	roots, err := gpuRoots(p, opts)
	if err != nil {
		return nil, err
	}
	if loaded := opts.GPURIMs; loaded != nil {
		if err := loaded.loadedFor(p, roots); err != nil {
			return nil, err
		}
		// The same certificates; the pools the RIMs were verified under.
		roots = loaded.roots
		v.opts.LoadedDriverRIM, v.opts.LoadedVBIOSRIM = loaded.driver, loaded.vbios
	} else if v.opts.DriverRIM, v.opts.VBIOSRIM, err = p.gpuRIMs(); err != nil {
		return nil, err
	}
	if roots != nil {
		// NVIDIA's roots are not added: nvidia.Verify pins them only when no pool is
		// given, so a verifier that trusts a simulated GPU trusts it alone.
		v.simTrusted = true
		v.opts.DeviceRoots, v.opts.RIMRoots = roots.pools()
	}
	return v, nil
}

// gpuRoots returns the simulated GPU roots a verification trusts: opts.SimGPURoots,
// else p's trust_sim_gpu_root; nil for none (NVIDIA's alone).
func gpuRoots(p *Policy, opts EvidenceOptions) (*SimGPURoots, error) {
	if opts.SimGPURoots != nil {
		return opts.SimGPURoots, nil
	}
	return p.SimGPURoots()
}

// GPURIMs are the GPU RIMs a policy gives (gpu_driver_rim, gpu_vbios_rim), verified once,
// when a verifier loads the policy (LoadGPURIMs), instead of with every evidence: a RIM
// is collateral, the same for every GPU with that driver or VBIOS, as Intel's TCB info
// is. Given in EvidenceOptions.GPURIMs, each GPU report then costs what is its own: its
// device chain and its signature (BenchmarkVerifyEvidence/one-GPU-new). Only
// LoadGPURIMs makes one, and nvidia.Verify uses a RIM only if nvidia.ParseRIM made it
// under the roots of that verification and its signing chain is valid at its time.
// Read-only: safe to share between concurrent verifications.
type GPURIMs struct {
	// driverMember and vbiosMember are the policy's members they were loaded from, so
	// that they are not taken for another policy's RIMs.
	driverMember, vbiosMember string
	// driver and vbios are nil for a RIM the policy does not give (the collateral
	// source serves it then).
	driver, vbios *nvidia.RIM
	// roots are the simulated GPU roots they were verified under; nil for NVIDIA's.
	roots *SimGPURoots
}

// LoadGPURIMs reads the RIMs policy p gives and verifies them (nvidia.ParseRIM: the
// XML-DSig signature, the signing chain at opts.Now, time.Now when zero) under the RIM
// root the verification will trust: opts.SimGPURoots, else p's trust_sim_gpu_root, else
// NVIDIA's pinned RIM root. The result is for EvidenceOptions.GPURIMs of every
// verification under p with the same roots. It fails when a member cannot be read or
// its RIM does not verify, naming the member and wrapping nvidia's error. Cost: the
// files' reads, and for each RIM two canonicalizations and its signature, plus the
// signing chain's verifications once for both (about 2 ms for a simulated GPU's pair,
// BenchmarkLoadGPURIMs).
func LoadGPURIMs(p *Policy, opts EvidenceOptions) (*GPURIMs, error) {
	roots, err := gpuRoots(p, opts)
	if err != nil {
		return nil, err
	}
	driverXML, vbiosXML, err := p.gpuRIMs()
	if err != nil {
		return nil, err
	}
	g := &GPURIMs{driverMember: p.GPUDriverRIM, vbiosMember: p.GPUVBIOSRIM, roots: roots}
	ropts := nvidia.RIMOptions{Now: opts.Now}.SharingSigners()
	if roots != nil {
		_, ropts.Roots = roots.pools()
	}
	for _, r := range []struct {
		member string
		xml    []byte
		rim    **nvidia.RIM
	}{{"gpu_driver_rim", driverXML, &g.driver}, {"gpu_vbios_rim", vbiosXML, &g.vbios}} {
		if r.xml == nil {
			continue
		}
		if *r.rim, err = nvidia.ParseRIM(r.xml, ropts); err != nil {
			return nil, fmt.Errorf("attest: %s: %w", r.member, err)
		}
	}
	return g, nil
}

// loadedFor checks that g was loaded from p's RIM members under roots (the same
// certificates, or NVIDIA's for both): RIMs loaded for one policy and given with
// another would replace the other's.
func (g *GPURIMs) loadedFor(p *Policy, roots *SimGPURoots) error {
	sameRoots := (g.roots == nil) == (roots == nil)
	if sameRoots && roots != nil {
		sameRoots = g.roots.Device.Equal(roots.Device) && g.roots.RIM.Equal(roots.RIM)
	}
	if g.driverMember != p.GPUDriverRIM || g.vbiosMember != p.GPUVBIOSRIM || !sameRoots {
		return errors.New("verify: the GPU RIMs given (EvidenceOptions.GPURIMs) were loaded for another policy's gpu_driver_rim, gpu_vbios_rim or GPU roots")
	}
	return nil
}

// checkGPUs checks the GPU reports of ev against the gpus event and the policy: that
// the evidence serves a report for exactly the GPUs the event log measures, each
// verified by nvidia.Verify over GPUNonce of the quote's REPORTDATA (one line per step
// of it), that the GPU it establishes is the one measured, and its driver and VBIOS
// versions and CC mode against the policy. A policy with require_gpu fails evidence
// that attests none.
func checkGPUs(r *Report, ev Evidence, q *Quote, events []Event, p *Policy, v *gpuVerification) {
	const name = "GPUs"
	if events == nil {
		r.fail(name, "not checked: the event log does not verify")
		return
	}
	i := slices.IndexFunc(events, func(e Event) bool { return e.Type == EventGPUs })
	var measured []GPUIdentity
	if i >= 0 {
		measured, _ = decodeGPUIdentities(events[i].Data) // checkLog validated it
	}
	switch {
	case i < 0 && len(ev.GPUs) > 0:
		r.fail(name, "the evidence serves %d GPU reports, but the event log measures no gpus event: GPUs the host did not measure at boot", len(ev.GPUs))
		return
	case i < 0 && p.RequireGPU:
		r.fail(name, "the policy requires a GPU, and the host's event log measures none (a host older than GPU attestation)")
		return
	case i < 0:
		// As an absent settlement key: nothing a policy could pin is left open (only
		// require_gpu speaks of GPUs), so an ok line, and the pinning policy of such a
		// host passes Strict.
		r.add("ok", name, "none", "none: the event log says nothing of GPUs (a host older than GPU attestation), and the policy does not require one (require_gpu)")
		return
	case len(ev.GPUs) != len(measured):
		r.fail(name, "the evidence serves %d GPU reports, the event log measures %d GPUs", len(ev.GPUs), len(measured))
		return
	case len(measured) == 0 && p.RequireGPU:
		r.add("fail", name, "none", "the policy requires a GPU, and the host attests none (serve --gpu none)")
		return
	case len(measured) == 0:
		r.add("ok", name, "none", "none: the host attests no GPU (serve --gpu none), and the policy does not require one (require_gpu)")
		return
	}
	r.add("ok", name, strconv.Itoa(len(measured)), "%d measured at boot, each with a report served", len(measured))
	nonce := GPUNonce(q.ReportData)
	for g, gev := range ev.GPUs {
		gpu := fmt.Sprintf("GPU %d", g)
		id, checks, err := nvidia.Verify(gev, nonce, v.opts)
		failed := false
		for _, c := range checks {
			verdict := "ok"
			if !c.OK {
				verdict, failed = "fail", true
			}
			r.add(verdict, gpu+" "+strings.TrimPrefix(c.Name, "GPU "), "", "%s", c.Detail)
		}
		nonceHex := hex.EncodeToString(nonce[:])
		if err != nil || failed {
			hint := ""
			if !v.simTrusted {
				hint = "; a simulated GPU's report verifies only with its roots trusted explicitly (--trust-sim-gpu-root), to test"
			}
			r.add("fail", gpu+" report", nonceHex, "does not verify as this quote's GPU report (nonce %x, GPUNonce of its REPORTDATA): %v%s", nonce, err, hint)
			r.fail(gpu+" identity", "not checked: the report does not verify")
			continue
		}
		root := "NVIDIA's device identity root"
		if id.Simulated {
			root = "a simulated GPU root trusted explicitly, NOT NVIDIA's: for testing only, it proves nothing about hardware"
		}
		r.add("ok", gpu+" report", nonceHex, "over nonce %x, GPUNonce of this quote's REPORTDATA (made for this quote), signed by the GPU's device key under %s", nonce, root)
		got := gpuIdentityOf(id)
		if got != measured[g] {
			r.add("fail", gpu+" identity", got.String(), "the report establishes %s, the event log measured %s: another GPU, driver or mode than the host measured at boot", got, measured[g])
			continue
		}
		r.gpus = append(r.gpus, id)
		r.add("ok", gpu+" identity", got.String(), "the GPU the event log measured: %s", got)
		checkPinned(r, pinned{name: gpu + " driver policy", what: "GPU driver version", allowed: &p.GPUDriverVersions, value: id.DriverVersion})
		checkPinned(r, pinned{name: gpu + " VBIOS policy", what: "GPU VBIOS version", allowed: &p.GPUVBIOSVersions, value: id.VBIOSVersion})
		checkCCMode(r, gpu+" CC mode", id.CCMode, p.GPUCCModes)
	}
}

// ccModes are the confidential-computing modes a signed report can state, all of them
// modes in which the GPU encrypts what crosses PCIe and isolates its memory.
var ccModes = []string{"spt", "mpt", "ppcie"}

// checkCCMode checks a GPU's confidential-computing mode as its signed report states
// it: without gpu_cc_modes, any CC mode passes, a report that states none (a Hopper's)
// is a warning, and anything else fails; with gpu_cc_modes, exactly those pass. Out of
// CC mode, the GPU's memory and the PCIe traffic to it are the machine owner's to read.
func checkCCMode(r *Report, name, mode string, allowed []string) {
	mode = ccModeName(mode)
	switch {
	case len(allowed) > 0 && slices.Contains(allowed, mode) && mode == ccModeUnknown:
		r.add("ok", name, mode, "unknown: the signed report does not state it, and the policy accepts that (gpu_cc_modes lists unknown): whether the GPU encrypts PCIe traffic is the host's word")
	case len(allowed) > 0 && slices.Contains(allowed, mode):
		r.add("ok", name, mode, "%s, a mode the policy accepts", mode)
	case len(allowed) > 0:
		r.add("fail", name, mode, "%s is not among the modes the policy accepts (%s)", mode, strings.Join(allowed, ", "))
	case slices.Contains(ccModes, mode):
		r.add("ok", name, mode, "%s: the signed report states a confidential-computing mode; the policy does not pin one", mode)
	case mode == ccModeUnknown:
		r.add("warn", name, mode, "unknown: the signed report does not state it (Hopper reports carry no CC flag), so whether the GPU encrypts PCIe traffic is the host's word; a policy accepts that with gpu_cc_modes [\"unknown\"]")
	default:
		r.add("fail", name, mode, "%s is not a confidential-computing mode this verifier knows (%s): prompts may cross PCIe in plaintext", mode, strings.Join(ccModes, ", "))
	}
}
