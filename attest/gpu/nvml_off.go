//go:build !(nvml && cgo)

package gpu

// OpenNVML fails with ErrNVMLNotBuilt: this build has no NVML (see the package doc).
func OpenNVML() (Provider, error) { return nil, ErrNVMLNotBuilt }
