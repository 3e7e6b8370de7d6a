package attest

import "context"

// Modes of the evidence providers, as Provider.Mode reports them.
const (
	ModeTDX = "tdx"
	ModeSim = "sim"
)

// Provider produces TDX quotes over a caller's REPORTDATA.
type Provider interface {
	// Mode names the provider: ModeTDX or ModeSim.
	Mode() string
	// Quote returns a TDX quote (v4 or, on newer hardware, v5 byte format) whose
	// REPORTDATA is reportData. It is slow on TDX (tens of ms to a second): keep it off
	// the request path.
	Quote(ctx context.Context, reportData [64]byte) ([]byte, error)
	// RTMR3 returns the register the runtime event log extends, the one whose value the
	// provider's quotes carry as RTMR3.
	RTMR3() Register
}
