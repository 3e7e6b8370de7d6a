package attest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// gpuHost is a host booted by BootWithGPUs on a simulated TDX and a simulated GPU, and
// what a verifier needs to trust both: the TDX root, the GPU roots and the GPU's RIMs.
type gpuHost struct {
	host     *Host
	sim      *Sim
	gpu      *SimGPU
	dir      string // where NewSimGPU wrote its roots and RIMs
	gpuRoots *SimGPURoots
	policy   Policy // gives the RIMs
}

func newGPUHost(t testing.TB) *gpuHost {
	t.Helper()
	sim, _ := newTestSim(t)
	dir := t.TempDir()
	gpu, err := NewSimGPU(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := BootWithGPUs(context.Background(), sim, gpu, "embedded", "m", SealingEvent(SealingSim))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, SimGPURootsFile))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ParseSimGPURoots(b)
	if err != nil {
		t.Fatal(err)
	}
	return &gpuHost{host: h, sim: sim, gpu: gpu, dir: dir, gpuRoots: roots, policy: Policy{
		GPUDriverRIM: filepath.Join(dir, SimGPUDriverRIMFile), GPUVBIOSRIM: filepath.Join(dir, SimGPUVBIOSRIMFile)}}
}

// opts trusts the simulated TDX and GPU.
func (g *gpuHost) opts() EvidenceOptions {
	return EvidenceOptions{SimRoot: g.sim.Root(), SimGPURoots: g.gpuRoots}
}

// pipeline is pipeline evidence for testManifest over nonce, serialised and parsed back
// as a client receives it, with the options a client verifies it with.
func (g *gpuHost) pipeline(t testing.TB, nonce []byte) (Evidence, EvidenceOptions) {
	t.Helper()
	ev, err := g.host.PipelineEvidence(context.Background(), nonce, testManifest)
	if err != nil {
		t.Fatal(err)
	}
	opts := g.opts()
	opts.PipelineID, opts.Nonce = testPipelineID(), nonce
	return roundTrip(t, ev), opts
}

// check returns the report's check named name, failing the test when there is none.
func check(t *testing.T, r *Report, name string) Check {
	t.Helper()
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no %q line in\n%s", name, r)
	}
	return r.Checks[i]
}

// Boot, fresh boot and pipeline evidence of a host with a (simulated) GPU verify: every
// GPU line passes, the report is bound to GPUNonce of the quote's REPORTDATA, and the
// GPU is the one measured.
func TestGPUEvidenceVerifies(t *testing.T) {
	g := newGPUHost(t)
	fresh, err := g.host.FreshBootEvidence(context.Background(), testNonce(2))
	if err != nil {
		t.Fatal(err)
	}
	pipeline, popts := g.pipeline(t, testNonce(3))
	bootOpts := g.opts()
	freshOpts := g.opts()
	freshOpts.Nonce = testNonce(2)
	for name, c := range map[string]struct {
		ev   Evidence
		opts EvidenceOptions
	}{"boot": {g.host.BootEvidence(), bootOpts}, "fresh boot": {fresh, freshOpts}, "pipeline": {pipeline, popts}} {
		t.Run(name, func(t *testing.T) {
			r := mustVerify(t, c.ev, g.policy, c.opts)
			if !r.OK() {
				t.Fatalf("fails:\n%s", r)
			}
			if len(c.ev.GPUs) != 1 {
				t.Fatalf("%d GPU reports, want 1", len(c.ev.GPUs))
			}
			q, err := ParseQuote(c.ev.Quote)
			if err != nil {
				t.Fatal(err)
			}
			nonce := GPUNonce(q.ReportData)
			if report := check(t, r, "GPU 0 report"); report.Value != hex.EncodeToString(nonce[:]) || report.Verdict() != "ok" {
				t.Errorf("GPU 0 report line %+v, want ok over nonce %x", report, nonce)
			}
			for _, name := range []string{"GPUs", "GPU 0 nonce", "GPU 0 report signature", "GPU 0 certificate chain", "GPU 0 measurements", "GPU 0 identity"} {
				if c := check(t, r, name); c.Verdict() != "ok" {
					t.Errorf("%s: %s", name, c)
				}
			}
			if c := check(t, r, "GPU 0 CC mode"); c.Verdict() != "ok" || c.Value != "spt" {
				t.Errorf("the simulated GPU states CC mode spt: got %s", c)
			}
			if !strings.Contains(r.String(), "gpus sha256:") {
				t.Errorf("the event log lines do not show the gpus event:\n%s", r)
			}
		})
	}
	t.Logf("pipeline evidence with a GPU:\n%s", mustVerify(t, pipeline, g.policy, popts))
}

// TestGPUEvidenceRefused performs the attacks on a GPU's evidence and the policy's GPU
// members: each must fail the named lines, and the report must not be OK.
func TestGPUEvidenceRefused(t *testing.T) {
	g := newGPUHost(t)
	other := newGPUHost(t) // another host, with another simulated GPU
	boot := g.host.BootEvidence()
	for _, c := range []struct {
		name   string
		change func(ev *Evidence, p *Policy, opts *EvidenceOptions)
		fails  []string
	}{
		{"the simulated GPU's roots not trusted", func(_ *Evidence, _ *Policy, opts *EvidenceOptions) { opts.SimGPURoots = nil },
			[]string{"GPU 0 certificate chain", "GPU 0 report"}},
		{"another simulated GPU's roots trusted", func(_ *Evidence, _ *Policy, opts *EvidenceOptions) { opts.SimGPURoots = other.gpuRoots },
			[]string{"GPU 0 certificate chain", "GPU 0 report"}},
		{"a byte of the signed report changed", func(ev *Evidence, _ *Policy, _ *EvidenceOptions) { ev.GPUs[0].Report[200] ^= 1 },
			[]string{"GPU 0 report signature", "GPU 0 report"}},
		{"the GPU report of the boot quote replayed", func(ev *Evidence, _ *Policy, _ *EvidenceOptions) { ev.GPUs = boot.GPUs },
			[]string{"GPU 0 nonce", "GPU 0 report"}},
		{"the GPU report dropped", func(ev *Evidence, _ *Policy, _ *EvidenceOptions) { ev.GPUs = nil }, []string{"GPUs"}},
		{"a second GPU report added", func(ev *Evidence, _ *Policy, _ *EvidenceOptions) { ev.GPUs = append(ev.GPUs, ev.GPUs[0]) }, []string{"GPUs"}},
		{"another GPU answers", func(ev *Evidence, p *Policy, opts *EvidenceOptions) {
			// Its report is genuine, for this quote, and trusted: only the GPU differs.
			q, _ := ParseQuote(ev.Quote)
			evs, err := other.gpu.Evidence(context.Background(), GPUNonce(q.ReportData))
			if err != nil {
				t.Fatal(err)
			}
			ev.GPUs, opts.SimGPURoots, *p = evs, other.gpuRoots, other.policy
		}, []string{"GPU 0 identity"}},
		{"no RIMs", func(_ *Evidence, p *Policy, _ *EvidenceOptions) { p.GPUDriverRIM, p.GPUVBIOSRIM = "", "" },
			[]string{"GPU 0 driver RIM", "GPU 0 VBIOS RIM", "GPU 0 measurements", "GPU 0 report"}},
		{"RIMs under another root", func(_ *Evidence, p *Policy, _ *EvidenceOptions) { p.GPUDriverRIM = other.policy.GPUDriverRIM },
			[]string{"GPU 0 driver RIM", "GPU 0 measurements", "GPU 0 report"}},
		{"a driver the policy does not pin", func(_ *Evidence, p *Policy, _ *EvidenceOptions) { p.GPUDriverVersions = []string{"550.54.15"} },
			[]string{"GPU 0 driver policy"}},
		{"a VBIOS the policy does not pin", func(_ *Evidence, p *Policy, _ *EvidenceOptions) { p.GPUVBIOSVersions = []string{"96.00.9F.00.04"} },
			[]string{"GPU 0 VBIOS policy"}},
		{"a CC mode the policy does not accept", func(_ *Evidence, p *Policy, _ *EvidenceOptions) { p.GPUCCModes = []string{"ppcie"} },
			[]string{"GPU 0 CC mode"}},
	} {
		// Each attack also with a cache warmed by good evidence: what verified before
		// must not let a changed report through.
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, cached %t", c.name, cached), func(t *testing.T) {
				ev, opts := g.pipeline(t, testNonce(4))
				if cached {
					opts.GPUCache = nvidia.NewCache()
					if r := mustVerify(t, ev, g.policy, opts); !r.OK() {
						t.Fatalf("good evidence fails:\n%s", r)
					}
				}
				p := g.policy
				c.change(&ev, &p, &opts)
				r := mustVerify(t, ev, p, opts)
				if r.OK() {
					t.Fatalf("passes:\n%s", r)
				}
				for _, name := range c.fails {
					if !slices.Contains(failed(r), name) {
						t.Errorf("%q does not fail; failed: %q\n%s", name, failed(r), r)
					}
				}
			})
		}
	}
}

// A policy that requires a GPU refuses a host that attests none (--gpu none) and a host
// that says nothing of GPUs (older than GPU attestation); one that does not require it
// passes both with an ok line.
func TestGPURequired(t *testing.T) {
	none := bootEvents() // measures GPUsEvent(nil), as Boot does
	old := slices.DeleteFunc(bootEvents(), func(e Event) bool { return e.Type == EventGPUs })
	for _, c := range []struct {
		name    string
		events  []Event
		require bool
		verdict string
	}{
		{"none, not required", none, false, "ok"},
		{"none, required", none, true, "fail"},
		{"not measured, not required", old, false, "ok"},
		{"not measured, required", old, true, "fail"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newTestHostWith(t, c.events)
			r := mustVerify(t, h.boot(t), Policy{RequireGPU: c.require}, EvidenceOptions{SimRoot: h.sim.Root()})
			if got := check(t, r, "GPUs"); got.Verdict() != c.verdict {
				t.Errorf("GPUs line %s, want %s", got, c.verdict)
			}
		})
	}
}

// Golden values of the GPU nonce and of the gpus event, computed independently with
// Python's hashlib and struct: a change here breaks every verifier in the field.
func TestGPUGolden(t *testing.T) {
	var rd [64]byte
	for i := range rd {
		rd[i] = byte(i)
	}
	if got := GPUNonce(rd); hex.EncodeToString(got[:]) != "9a8c5e381993c96752d0431e0d7a80761600176862b0db13418ac6503488846f" {
		t.Errorf("GPUNonce(0..63) = %x", got)
	}
	one := GPUsEvent([]GPUIdentity{{ChainSHA256: [32]byte(bytes.Repeat([]byte{0x11}, 32)), DriverVersion: "550.54.15", VBIOSVersion: "96.00.9F.00.04"}})
	for _, c := range []struct {
		event       Event
		data, value string
		digest      string
	}{
		{GPUsEvent(nil), "00000000", "none", "680acb4636bb9a10974decbddb6d52739557eee6f0811db0d23aa004750c00655f53aa347f7036335769a9eb0e095ecf"},
		{one, "00000001" + strings.Repeat("11", 32) + "000000093535302e35342e31350000000e39362e30302e39462e30302e303400000000",
			"sha256:" + strings.Repeat("11", 32) + " driver 550.54.15 vbios 96.00.9F.00.04 cc unknown",
			"6a63e361ee48c38452cc44284bac61f411face82a1cfde2ad470ebc75a1149e275a6d8194fffa67a4f33306105e818f9"},
	} {
		d := c.event.Digest()
		if hex.EncodeToString(c.event.Data) != c.data || c.event.Value() != c.value || hex.EncodeToString(d[:]) != c.digest {
			t.Errorf("gpus event %x, value %q, digest %x; want %s, %q, %s", c.event.Data, c.event.Value(), d, c.data, c.value, c.digest)
		}
		if err := c.event.Validate(); err != nil {
			t.Errorf("%s: %v", c.event, err)
		}
	}
}

// The gpus event's data is parsed strictly: anything but the canonical encoding of at
// most 16 GPUs with short plain versions is refused, so that no report line or policy
// comparison sees text a host chose to confuse it.
func TestGPUsEventRefuses(t *testing.T) {
	valid := GPUsEvent([]GPUIdentity{{DriverVersion: "550.54.15", VBIOSVersion: "96.00.9F.00.04", CCMode: "spt"}}).Data
	field := func(s string) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(s))) }
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"count only, 1 GPU", []byte{0, 0, 0, 1}},
		{"17 GPUs", []byte{0, 0, 0, 17}},
		{"a byte left over", append(bytes.Clone(valid), 0)},
		{"truncated", valid[:len(valid)-1]},
		{"a field length past the end", append(append([]byte{0, 0, 0, 1}, make([]byte, 32)...), 0xff, 0xff, 0xff, 0xff)},
		{"empty driver version", GPUsEvent([]GPUIdentity{{VBIOSVersion: "1"}}).Data},
		{"a newline in a version", GPUsEvent([]GPUIdentity{{DriverVersion: "1\nok   GPU", VBIOSVersion: "1"}}).Data},
		{"a space in the CC mode", GPUsEvent([]GPUIdentity{{DriverVersion: "1", VBIOSVersion: "1", CCMode: "on off"}}).Data},
		{"a version of 65 bytes", GPUsEvent([]GPUIdentity{{DriverVersion: strings.Repeat("1", 65), VBIOSVersion: "1"}}).Data},
		{"the field length 0xffffffff", append(append(append([]byte{0, 0, 0, 1}, make([]byte, 32)...), field("1")...), 0xff, 0xff, 0xff, 0xff)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := (Event{Type: EventGPUs, Data: c.data}).Validate(); !errors.Is(err, ErrEventData) {
				t.Errorf("Validate(%x) = %v, want ErrEventData", c.data, err)
			}
		})
	}
}

// FuzzGPUsEvent: whatever a host puts in a gpus event, the parser does not panic, and
// what it accepts is exactly the canonical encoding of what it returns.
func FuzzGPUsEvent(f *testing.F) {
	f.Add(GPUsEvent(nil).Data)
	f.Add(GPUsEvent([]GPUIdentity{{DriverVersion: "550.54.15", VBIOSVersion: "96.00.9F.00.04", CCMode: "spt"}, {DriverVersion: "1", VBIOSVersion: "2"}}).Data)
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := decodeGPUIdentities(data)
		if err != nil {
			return
		}
		if again := GPUsEvent(ids).Data; !bytes.Equal(again, data) {
			t.Fatalf("%x decodes to %v, which encodes to %x", data, ids, again)
		}
	})
}

// The host serves reports only from the GPUs it measured: when another GPU answers
// after boot (swapped, or its driver reloaded), evidence fails instead of serving it.
func TestHostRefusesAnotherGPU(t *testing.T) {
	sim, _ := newTestSim(t)
	first, err := NewSimGPU(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewSimGPU(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	swap := &swappableGPU{GPUProvider: first}
	h, err := BootWithGPUs(context.Background(), sim, swap, "embedded", "m")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.FreshBootEvidence(context.Background(), testNonce(1)); err != nil {
		t.Fatalf("the measured GPU: %v", err)
	}
	swap.GPUProvider = second
	if _, err := h.PipelineEvidence(context.Background(), testNonce(1), testManifest); err == nil || !strings.Contains(err.Error(), "the event log measured") {
		t.Fatalf("another GPU's evidence served: %v", err)
	}
}

// swappableGPU is a GPUProvider whose GPU a test replaces.
type swappableGPU struct{ GPUProvider }

// The policy's GPU members are parsed strictly, and LoadPolicy reads the files they
// name relative to the policy, as it does trust_sim_root.
func TestPolicyGPUMembers(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"require_gpu":true,"gpu_driver_versions":["550.54.15"],"gpu_vbios_versions":["96.00.9F.00.04"],"gpu_cc_modes":["spt","unknown"]}`))
	if err != nil || !p.RequireGPU || p.GPUDriverVersions[0] != "550.54.15" || p.GPUVBIOSVersions[0] != "96.00.9F.00.04" || len(p.GPUCCModes) != 2 {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	for name, bad := range map[string]string{
		"require_gpu as a string":    `{"require_gpu":"yes"}`,
		"empty driver version":       `{"gpu_driver_versions":[""]}`,
		"a newline in a version":     `{"gpu_vbios_versions":["1\nok   GPU 0"]}`,
		"a space in a CC mode":       `{"gpu_cc_modes":["cc on"]}`,
		"a version of 65 characters": `{"gpu_driver_versions":["` + strings.Repeat("1", 65) + `"]}`,
		"unknown GPU member":         `{"gpu_rims":[]}`,
	} {
		if _, err := ParsePolicy([]byte(bad)); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: err %v, want ErrPolicy", name, err)
		}
	}

	g := newGPUHost(t)
	dir := t.TempDir()
	for name, from := range map[string]string{"driver.xml": SimGPUDriverRIMFile, "vbios.xml": SimGPUVBIOSRIMFile, "roots.pem": SimGPURootsFile} {
		b, err := os.ReadFile(filepath.Join(g.dir, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(path, []byte(`{"gpu_driver_rim":"driver.xml","gpu_vbios_rim":"vbios.xml","trust_sim_gpu_root":"roots.pem","require_gpu":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	ev, opts := g.pipeline(t, testNonce(5))
	opts.SimGPURoots = nil // the policy's trust_sim_gpu_root, read relative to it
	if r := mustVerify(t, ev, *loaded, opts); !r.OK() {
		t.Errorf("the policy's files relative to it are not used:\n%s", r)
	}
	loaded.TrustSimGPURoot = filepath.Join(dir, "missing.pem")
	if _, err := VerifyEvidence(ev, *loaded, opts); !errors.Is(err, ErrPolicy) {
		t.Errorf("a missing trust_sim_gpu_root file: %v, want ErrPolicy", err)
	}
}

// PinningPolicy pins the GPU a verified report established; CarryGPUTrust gives it, inline,
// the RIMs and simulated roots it was verified with, and the host then passes strict.
func TestPinningPolicyGPU(t *testing.T) {
	g := newGPUHost(t)
	ev, opts := g.pipeline(t, testNonce(6))
	r := mustVerify(t, ev, g.policy, opts)
	p, err := r.PinningPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if !p.RequireGPU || !slices.Equal(p.GPUDriverVersions, []string{nvidia.SimDriverVersion}) || !slices.Equal(p.GPUVBIOSVersions, []string{nvidia.SimVBIOSVersion}) ||
		!slices.Equal(p.GPUCCModes, []string{"spt"}) {
		t.Errorf("pinned %+v", p)
	}
	if err := p.CarryGPUTrust(&g.policy, g.gpuRoots); err != nil {
		t.Fatal(err)
	}
	if !isXML(p.GPUDriverRIM) || !isXML(p.GPUVBIOSRIM) || !isPEM(p.TrustSimGPURoot) {
		t.Fatalf("not inline: %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParsePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	opts.SimGPURoots, opts.Strict, opts.ExpectModules = nil, true, []string{testModuleA}
	opts.ExpectManifest = testManifest
	if r := mustVerify(t, ev, *again, opts); !r.OK() {
		t.Errorf("the host fails strict under the policy written from it:\n%s", r)
	}
	// And the pins hold: another driver than the pinned one fails.
	again.GPUDriverVersions = []string{"550.54.15"}
	if r := mustVerify(t, ev, *again, opts); !slices.Contains(failed(r), "GPU 0 driver policy") {
		t.Errorf("a pinned policy with another driver passes:\n%s", r)
	}
}

// FuzzVerifyGPUEvidence: evidence with GPU reports is outside bytes. Whatever a host
// serves, VerifyEvidence does not panic nor blame its caller, and evidence it passes
// carries exactly the simulated GPU's report, of the GPU the host measured.
func FuzzVerifyGPUEvidence(f *testing.F) {
	g := newGPUHost(f)
	boot := g.host.BootEvidence()
	good, err := json.Marshal(boot)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"mode":"sim","quote":"AAAA","event_log":{"events":[]},"gpus":[{"report":"AAAA","cert_chain":""}]}`))
	want, err := nvidia.IdentityOf(boot.GPUs[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b)
		if err != nil {
			return
		}
		r, err := VerifyEvidence(*ev, g.policy, g.opts())
		if err != nil {
			t.Fatalf("evidence made VerifyEvidence fail as if for a caller's mistake: %v", err)
		}
		if !r.OK() {
			return
		}
		if len(ev.GPUs) != 1 {
			t.Fatalf("evidence with %d GPU reports verifies:\n%s", len(ev.GPUs), r)
		}
		if id, err := nvidia.IdentityOf(ev.GPUs[0]); err != nil || id != want {
			t.Fatalf("a report of another GPU verifies (%v):\n%s", err, r)
		}
	})
}

// The CC mode line: without gpu_cc_modes any signed CC mode passes, a report that states
// none (a Hopper's) warns, anything else fails; with it, exactly the modes listed pass.
func TestCheckCCMode(t *testing.T) {
	for _, c := range []struct {
		mode    string
		allowed []string
		verdict string
	}{
		{"spt", nil, "ok"},
		{"mpt", nil, "ok"},
		{"ppcie", nil, "ok"},
		{"", nil, "warn"},
		{"off", nil, "fail"},
		{"spt", []string{"spt"}, "ok"},
		{"mpt", []string{"spt"}, "fail"},
		{"", []string{"spt"}, "fail"},
		{"", []string{"unknown"}, "ok"},
		{"", []string{"spt", "unknown"}, "ok"},
	} {
		r := &Report{}
		checkCCMode(r, "CC mode", c.mode, c.allowed)
		if got := r.Checks[0].Verdict(); got != c.verdict {
			t.Errorf("mode %q, policy %q: %s, want %s", c.mode, c.allowed, r.Checks[0], c.verdict)
		}
	}
}

// An RA-TLS certificate of a host with a GPU carries its boot evidence, GPU report
// included: a client verifies it in the handshake when it trusts the simulated GPU
// through its policy (as cocoon chat and proxy do), and refuses it when it does not.
func TestRATLSWithGPU(t *testing.T) {
	g := newGPUHost(t)
	url := serveTLS(t, g.host.TLSConfig(time.Hour))
	p := g.policy
	p.TrustSimGPURoot = filepath.Join(g.dir, SimGPURootsFile)
	trusting, err := NewRATLSVerifier(p, EvidenceOptions{SimRoot: g.sim.Root()})
	if err != nil {
		t.Fatal(err)
	}
	if err := get(trusting, url); err != nil {
		t.Fatalf("the simulated GPU trusted: %v", err)
	}
	if ev, _, ok := trusting.Pinned(); !ok || len(ev.GPUs) != 1 {
		t.Errorf("pinned %t with %d GPU reports", ok, len(ev.GPUs))
	}
	refusing, err := NewRATLSVerifier(g.policy, EvidenceOptions{SimRoot: g.sim.Root()})
	if err != nil {
		t.Fatal(err)
	}
	if err := get(refusing, url); !errors.Is(err, ErrRATLS) || !strings.Contains(err.Error(), "GPU 0 report: ") {
		t.Errorf("the simulated GPU not trusted: %v", err)
	}
}
