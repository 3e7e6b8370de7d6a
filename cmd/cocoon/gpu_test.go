package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/web"
)

// gpuHost runs the real web server as `cocoon-host serve --attest sim --gpu sim` runs
// it: the embedded engine, a simulated TDX and a simulated GPU that write their roots
// and RIMs into dir/attest. It returns the host's URL and that directory.
func gpuHost(t *testing.T) (base, attestDir string) {
	t.Helper()
	ctx := context.Background()
	engine, err := embedded.New(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	attestDir = filepath.Join(t.TempDir(), "attest")
	sim, err := attest.NewSim(attestDir)
	if err != nil {
		t.Fatal(err)
	}
	gpu, err := attest.NewSimGPU(attestDir)
	if err != nil {
		t.Fatal(err)
	}
	ah, err := attest.BootWithGPUs(ctx, sim, gpu, "embedded", "sha256:"+engine.WeightsSHA256(), attest.SealingEvent(attest.SealingSim))
	if err != nil {
		t.Fatal(err)
	}
	return serveWeb(t, web.Config{Backend: engine, APIKeys: []web.APIKey{{Name: "test", Key: testKey}}, Attestation: ah, MaxQuotesPerSecond: 50}), attestDir
}

// TestVerifyGPU is issue 16's acceptance: against a host with a simulated GPU, cocoon
// verify prints an ok line for the GPU report bound to the nonce when it trusts the
// simulated GPU's roots, fails on that line when it does not, and fails a GPU report
// changed on the way; a policy it writes from the host holds the host to its GPU.
func TestVerifyGPU(t *testing.T) {
	base, dir := gpuHost(t)
	id := pipelineOf(t, "push", "--pre", examplePlugin(t, "pii-redactor/go/pii-redactor.wasm"), "--host", base, "--api-key", testKey)
	tampered := tampering(t, base, func(path string, body []byte) ([]byte, bool) {
		var ev attest.Evidence
		if !strings.HasPrefix(path, "/v1/attestation") || json.Unmarshal(body, &ev) != nil || len(ev.GPUs) != 1 {
			return nil, false
		}
		ev.GPUs[0].Report[100] ^= 1 // a measurement, in the signed part
		b, err := json.Marshal(ev)
		return b, err == nil
	})
	rims := writeTemp(t, `{"gpu_driver_rim": "`+filepath.Join(dir, attest.SimGPUDriverRIMFile)+`", "gpu_vbios_rim": "`+filepath.Join(dir, attest.SimGPUVBIOSRIMFile)+`"}`)
	written, saved := filepath.Join(t.TempDir(), "policy.json"), filepath.Join(t.TempDir(), "evidence.json")
	simRoot, gpuRoots := filepath.Join(dir, attest.SimRootFile), filepath.Join(dir, attest.SimGPURootsFile)
	trust := []string{"--trust-sim-root", simRoot, "--policy", rims}
	for _, c := range []struct {
		name        string
		args        []string
		code        int
		want        []string // lines, or the start of lines, of the output
		errContains string
	}{
		{"the simulated GPU's roots trusted", append([]string{"--host", base, "--pipeline", id, "--trust-sim-gpu-root", gpuRoots}, trust...), 0,
			[]string{"ok   GPU 0 report: over nonce ", "ok   GPU 0 nonce: ", "ok   GPU 0 identity: the GPU the event log measured", "ok   GPU 0 measurements: "}, ""},
		{"the simulated GPU's roots not trusted", append([]string{"--host", base}, trust...), 1,
			[]string{"FAIL GPU 0 report: does not verify as this quote's GPU report", "FAIL GPU 0 certificate chain: "}, "verification failed"},
		{"a GPU report changed on the way", append([]string{"--host", tampered, "--trust-sim-gpu-root", gpuRoots}, trust...), 1,
			[]string{"FAIL GPU 0 report signature: ", "FAIL GPU 0 report: "}, "verification failed"},
		{"write a policy", append([]string{"--host", base, "--trust-sim-gpu-root", gpuRoots, "--write-policy", written}, trust...), 0,
			[]string{"ok   GPU 0 report: "}, ""},
		{"held to the written policy", []string{"--host", base, "--policy", written, "--strict"}, 0,
			[]string{"ok   GPU 0 report: ", "ok   GPU 0 driver policy: 999.0.0 is allowed by the policy", "ok   GPU 0 CC mode: spt, a mode the policy accepts", "ok   strict: "}, ""},
		{"save the evidence", append([]string{"--host", base, "--pipeline", id, "--trust-sim-gpu-root", gpuRoots, "--save-evidence", saved}, trust...), 0,
			[]string{"ok   GPU 0 report: "}, ""},
		{"the saved GPU reports verify offline", append([]string{"--evidence", saved, "--trust-sim-gpu-root", gpuRoots}, trust...), 0,
			[]string{"ok   GPU 0 report: ", "ok   GPU 0 nonce: "}, ""},
		{"not simulated GPU roots", append([]string{"--host", base, "--trust-sim-gpu-root", simRoot}, trust...), 1, nil,
			"--trust-sim-gpu-root: simulated GPU roots: 1 certificates, want 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := cocoon(t, "", append([]string{"verify"}, c.args...)...)
			if code != c.code || !strings.Contains(errOut, c.errContains) {
				t.Fatalf("exit %d, want %d; stderr %q, want %q; stdout:\n%s", code, c.code, errOut, c.errContains, out)
			}
			for _, line := range c.want {
				if !strings.Contains(out, "\n"+line) {
					t.Errorf("no line %q in:\n%s", line, out)
				}
			}
		})
	}
	p, err := os.ReadFile(written)
	if err != nil {
		t.Fatal(err)
	}
	for _, member := range []string{`"require_gpu": true`, `"gpu_driver_versions"`, `"gpu_cc_modes"`, `"trust_sim_gpu_root": "-----BEGIN CERTIFICATE`, `"gpu_driver_rim": "\u003c`} {
		if !strings.Contains(string(p), member) {
			t.Errorf("the written policy has no %s:\n%s", member, p)
		}
	}
}
