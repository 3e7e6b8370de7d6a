//go:build !js

// Package tdx is the host side of attestation on an Intel TDX guest: the
// attest.Provider that takes quotes from the guest's quote interface and extends RTMR3
// through the kernel. Only the host (cocoon-host serve --attest tdx) imports it; a
// verifier never does, so the verifier's programs (cocoon, the reviewer's page) do not
// carry the guest driver's client. It does not build for js: the browser has no
// driver, and go-tdx-guest's client does not build there.
package tdx

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-tdx-guest/client"

	"github.com/cocoonhost/cocoon/attest"
)

const (
	// tdxGuestDevice is the TDX guest driver's device, the fallback quote interface.
	tdxGuestDevice = "/dev/tdx_guest"
	// rtmr3SysfsPath is the kernel's RTMR3 attribute (Linux 6.16+): a write of 48
	// bytes extends the register, a read returns its value.
	rtmr3SysfsPath = "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384"
)

// ErrUnavailable is returned by New on a machine that is not a TDX guest.
var ErrUnavailable = errors.New("attest: no TDX quote interface (neither configfs-tsm with provider tdx_guest nor " + tdxGuestDevice + ")")

// Provider is the attest.Provider of a TDX guest: quotes come from go-tdx-guest's
// client, through configfs-tsm when the kernel offers it, else through /dev/tdx_guest.
// RTMR3 is the kernel's sysfs attribute.
//
// A TD has no sealing key to ask for: the TDX module (1.x) offers a guest reports
// (TDG.MR.REPORT) and RTMR extensions but nothing like SGX's EGETKEY, the Linux guest
// driver exposes only TDX_CMD_GET_REPORT0 (quotes go through configfs-tsm), and
// go-tdx-guest accordingly wraps reports, quotes and RTMRs only. A TDX host therefore
// takes its root sealing secret from a file the TD image provisions into TD-private
// memory (seal.FromFile), or runs with seal.None; the sealing event says which.
type Provider struct {
	qp  client.QuoteProvider
	reg *Register
}

// Available reports whether this machine is a TDX guest with a quote interface. It
// creates (and the kernel removes) a configfs-tsm report entry to ask which provider
// backs it.
func Available() bool {
	qp, err := client.GetQuoteProvider()
	if err == nil && qp.IsSupported() == nil {
		return true
	}
	_, err = os.Stat(tdxGuestDevice)
	return err == nil
}

// New returns the TDX provider, or ErrUnavailable when Available is false.
func New() (*Provider, error) {
	if !Available() {
		return nil, ErrUnavailable
	}
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("attest: tdx quote provider: %w", err)
	}
	return &Provider{qp: qp, reg: &Register{path: rtmr3SysfsPath}}, nil
}

// Mode implements attest.Provider.
func (t *Provider) Mode() string { return attest.ModeTDX }

// RTMR3 implements attest.Provider.
func (t *Provider) RTMR3() attest.Register { return t.reg }

// Quote implements attest.Provider. The quote interface cannot be interrupted: when ctx ends
// first, Quote returns ctx's error and the pending quote is discarded when it arrives.
func (t *Provider) Quote(ctx context.Context, reportData [64]byte) ([]byte, error) {
	type result struct {
		quote []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		q, err := client.GetRawQuote(t.qp, reportData)
		done <- result{q, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("attest: tdx quote: %w", r.err)
		}
		return r.quote, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Register is RTMR3 of a TD, reached through the kernel's sysfs attribute
// /sys/class/misc/tdx_guest/measurements/rtmr3:sha384.
type Register struct {
	path string
}

// Extend implements attest.Register: it writes digest to the attribute, which the kernel turns
// into a TDG.MR.RTMR.EXTEND call.
func (r *Register) Extend(digest [48]byte) error {
	f, err := os.OpenFile(r.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("rtmr3: %w", err)
	}
	if _, err := f.WriteAt(digest[:], 0); err != nil {
		f.Close()
		return fmt.Errorf("rtmr3: extend: %w", err)
	}
	return f.Close()
}

// Read implements attest.Register.
func (r *Register) Read() ([48]byte, error) {
	b, err := os.ReadFile(r.path)
	if err != nil {
		return [48]byte{}, fmt.Errorf("rtmr3: %w", err)
	}
	if len(b) != 48 {
		return [48]byte{}, fmt.Errorf("rtmr3: read %d bytes, want 48", len(b))
	}
	return [48]byte(b), nil
}
