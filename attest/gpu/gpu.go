// Package gpu obtains NVIDIA GPUs' attestation reports on real hardware, through NVML
// (github.com/NVIDIA/go-nvml), for `cocoon-host serve --gpu nvml`.
//
// NVML is a C library the NVIDIA driver installs (libnvidia-ml.so.1), which go-nvml
// loads with dlopen through cgo. The published host is built without cgo, so that it
// builds and runs anywhere, reproducibly: the NVML provider is compiled only with the
// build tag nvml and cgo (CGO_ENABLED=1 go build -tags nvml ./cmd/cocoon-host), a host
// binary of its own with its own host-binary measurement. Without them OpenNVML fails
// with ErrNVMLNotBuilt; with them, on a machine without the driver, with ErrNoDriver.
package gpu

import (
	"context"
	"errors"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// Errors of OpenNVML.
var (
	// ErrNVMLNotBuilt is returned by a host built without the nvml tag or without cgo.
	ErrNVMLNotBuilt = errors.New("this cocoon-host was built without NVML: build it with CGO_ENABLED=1 and -tags nvml to attest NVIDIA GPUs")
	// ErrNoDriver is returned when NVML cannot be loaded: no NVIDIA driver is
	// installed (libnvidia-ml.so.1 is not found).
	ErrNoDriver = errors.New("no NVIDIA driver: libnvidia-ml.so.1 cannot be loaded")
	// ErrNoGPU is returned when NVML finds no GPU.
	ErrNoGPU = errors.New("NVML finds no GPU")
)

// Provider is an attest.GPUProvider that holds NVML until closed.
type Provider interface {
	// Mode returns "nvml".
	Mode() string
	// Evidence returns each GPU's attestation report over nonce and its attestation
	// certificate chain, in NVML's device order.
	Evidence(ctx context.Context, nonce [32]byte) ([]nvidia.Evidence, error)
	// Close shuts NVML down.
	Close() error
}
