//go:build nvml && cgo

package gpu

import (
	"context"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// nvmlProvider asks NVML for the reports of every GPU it finds at open.
type nvmlProvider struct {
	mu      sync.Mutex // NVML calls are serialised: one report at a time per GPU
	devices []nvml.Device
}

// OpenNVML loads NVML, initialises it and lists the GPUs. It fails with ErrNoDriver
// when libnvidia-ml.so.1 cannot be loaded, ErrNoGPU when there is no GPU, and with
// NVML's message otherwise. Cost: NVML's initialisation (up to seconds on a GPU
// machine).
func OpenNVML() (Provider, error) {
	switch ret := nvml.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return nil, ErrNoDriver
	default:
		return nil, fmt.Errorf("NVML: initialise: %s", nvml.ErrorString(ret))
	}
	p := &nvmlProvider{}
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		nvml.Shutdown()
		return nil, fmt.Errorf("NVML: count GPUs: %s", nvml.ErrorString(ret))
	}
	if n == 0 {
		nvml.Shutdown()
		return nil, ErrNoGPU
	}
	for i := range n {
		d, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			nvml.Shutdown()
			return nil, fmt.Errorf("NVML: GPU %d: %s", i, nvml.ErrorString(ret))
		}
		p.devices = append(p.devices, d)
	}
	return p, nil
}

func (*nvmlProvider) Mode() string { return "nvml" }

// Evidence asks each GPU for a report over nonce (the SPDM GET_MEASUREMENTS request
// and response, as NVML returns them) and its attestation certificate chain (PEM).
// Cost: one signed report per GPU, tens of ms each.
func (p *nvmlProvider) Evidence(ctx context.Context, nonce [32]byte) ([]nvidia.Evidence, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]nvidia.Evidence, len(p.devices))
	for i, d := range p.devices {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		report := nvml.ConfComputeGpuAttestationReport{Nonce: nonce}
		if ret := d.GetConfComputeGpuAttestationReport(&report); ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML: GPU %d: attestation report: %s (is the GPU in confidential-computing mode?)", i, nvml.ErrorString(ret))
		}
		cert, ret := d.GetConfComputeGpuCertificate()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML: GPU %d: certificate chain: %s", i, nvml.ErrorString(ret))
		}
		if int(report.AttestationReportSize) > len(report.AttestationReport) || int(cert.AttestationCertChainSize) > len(cert.AttestationCertChain) {
			return nil, fmt.Errorf("NVML: GPU %d: a report of %d bytes or a chain of %d bytes, larger than NVML's buffers", i, report.AttestationReportSize, cert.AttestationCertChainSize)
		}
		out[i] = nvidia.Evidence{
			Report:    append([]byte(nil), report.AttestationReport[:report.AttestationReportSize]...),
			CertChain: append([]byte(nil), cert.AttestationCertChain[:cert.AttestationCertChainSize]...),
		}
	}
	return out, nil
}

// Close shuts NVML down.
func (p *nvmlProvider) Close() error {
	if ret := nvml.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("NVML: shut down: %s", nvml.ErrorString(ret))
	}
	return nil
}
