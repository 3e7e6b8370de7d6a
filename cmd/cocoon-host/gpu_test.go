package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/gpu"
)

// serve --gpu sim measures a simulated GPU, says so, writes what a verifier must be
// given (its roots, its RIMs), and serves its report in the evidence, which verifies
// with them; --gpu none (the default) says the host attests no GPU.
func TestServeGPU(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", ".."))
	for _, c := range []struct {
		name, flag, stdout string
		reports            int
	}{
		{"sim", "sim", "GPU: sim (a simulated NVIDIA GPU, not hardware: trust ", 1},
		{"none, the default", "", "GPU: none (the evidence says this host attests no GPU)", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			args := []string{"--data", data, "--model-dir", model, "--attest", "sim"}
			if c.flag != "" {
				args = append(args, "--gpu", c.flag)
			}
			r := startServe(t, args...)
			defer r.stop(t)
			if !strings.Contains(r.stdout.String(), c.stdout) {
				t.Errorf("stdout does not say %q:\n%s", c.stdout, r.stdout.String())
			}
			resp := r.request(t, "GET", "/v1/attestation?nonce="+strings.Repeat("ab", 16), "", "")
			var ev attest.Evidence
			if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || resp.StatusCode != 200 {
				t.Fatalf("/v1/attestation: %s, %v", resp.Status, err)
			}
			if len(ev.GPUs) != c.reports {
				t.Fatalf("%d GPU reports, want %d", len(ev.GPUs), c.reports)
			}
			dir := filepath.Join(data, "attest")
			policy := attest.Policy{RequireGPU: c.reports > 0}
			opts := attest.EvidenceOptions{Nonce: []byte(strings.Repeat("\xab", 16))}
			if opts.SimRoot, err = loadCert(filepath.Join(dir, attest.SimRootFile)); err != nil {
				t.Fatal(err)
			}
			if c.reports > 0 {
				policy.GPUDriverRIM, policy.GPUVBIOSRIM = filepath.Join(dir, attest.SimGPUDriverRIMFile), filepath.Join(dir, attest.SimGPUVBIOSRIMFile)
				b, err := os.ReadFile(filepath.Join(dir, attest.SimGPURootsFile))
				if err != nil {
					t.Fatal(err)
				}
				if opts.SimGPURoots, err = attest.ParseSimGPURoots(b); err != nil {
					t.Fatal(err)
				}
			}
			report, err := attest.VerifyEvidence(ev, policy, opts)
			if err != nil || !report.OK() {
				t.Fatalf("the evidence does not verify with what serve wrote: %v\n%s", err, report)
			}
		})
	}
}

func loadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return attest.ParseCertificatePEM(b)
}

// serve refuses an unknown --gpu, and --gpu nvml where it cannot work: in this build
// (no NVML), or with NVML but no driver, before it listens, saying what to do instead.
func TestServeGPUNVMLUnavailable(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	err = runServe(context.Background(), []string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--model-dir", model, "--attest", "sim", "--gpu", "nvml"}, io.Discard, io.Discard)
	if !errors.Is(err, gpu.ErrNVMLNotBuilt) && !errors.Is(err, gpu.ErrNoDriver) || !strings.Contains(err.Error(), "--gpu sim") {
		t.Errorf("error %v, want ErrNVMLNotBuilt or ErrNoDriver, naming --gpu sim", err)
	}
	err = runServe(context.Background(), []string{"--gpu", "cuda"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `gpu "cuda": must be none, sim or nvml`) {
		t.Errorf("--gpu cuda: %v", err)
	}
}
