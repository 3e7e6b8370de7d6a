//go:build !js

// The TDX provider takes quotes from the guest driver; the browser build of the
// verifier (web/page/verifier) has no driver, and go-tdx-guest's client does not build
// for js.

package attest

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-tdx-guest/client"
)

const (
	// tdxGuestDevice is the TDX guest driver's device, the fallback quote interface.
	tdxGuestDevice = "/dev/tdx_guest"
	// rtmr3SysfsPath is the kernel's RTMR3 attribute (Linux 6.16+): a write of 48
	// bytes extends the register, a read returns its value.
	rtmr3SysfsPath = "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384"
)

// ErrNoTDX is returned by NewTDX on a machine that is not a TDX guest.
var ErrNoTDX = errors.New("attest: no TDX quote interface (neither configfs-tsm with provider tdx_guest nor " + tdxGuestDevice + ")")

// TDX is the Provider of a TDX guest: quotes come from go-tdx-guest's client, through
// configfs-tsm when the kernel offers it, else through /dev/tdx_guest. RTMR3 is the
// kernel's sysfs attribute.
//
// A TD has no sealing key to ask for: the TDX module (1.x) offers a guest reports
// (TDG.MR.REPORT) and RTMR extensions but nothing like SGX's EGETKEY, the Linux guest
// driver exposes only TDX_CMD_GET_REPORT0 (quotes go through configfs-tsm), and
// go-tdx-guest accordingly wraps reports, quotes and RTMRs only. A TDX host therefore
// takes its root sealing secret from a file the TD image provisions into TD-private
// memory (SealerFromFile), or runs with NoSealing; the sealing event says which.
type TDX struct {
	qp  client.QuoteProvider
	reg *TDXRegister
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

// NewTDX returns the TDX provider, or ErrNoTDX when Available is false.
func NewTDX() (*TDX, error) {
	if !Available() {
		return nil, ErrNoTDX
	}
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("attest: tdx quote provider: %w", err)
	}
	return &TDX{qp: qp, reg: &TDXRegister{path: rtmr3SysfsPath}}, nil
}

// Mode implements Provider.
func (t *TDX) Mode() string { return ModeTDX }

// RTMR3 implements Provider.
func (t *TDX) RTMR3() Register { return t.reg }

// Quote implements Provider. The quote interface cannot be interrupted: when ctx ends
// first, Quote returns ctx's error and the pending quote is discarded when it arrives.
func (t *TDX) Quote(ctx context.Context, reportData [64]byte) ([]byte, error) {
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

// TDXRegister is RTMR3 of a TD, reached through the kernel's sysfs attribute
// /sys/class/misc/tdx_guest/measurements/rtmr3:sha384.
type TDXRegister struct {
	path string
}

// Extend implements Register: it writes digest to the attribute, which the kernel turns
// into a TDG.MR.RTMR.EXTEND call.
func (r *TDXRegister) Extend(digest [48]byte) error {
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

// Read implements Register.
func (r *TDXRegister) Read() ([48]byte, error) {
	b, err := os.ReadFile(r.path)
	if err != nil {
		return [48]byte{}, fmt.Errorf("rtmr3: %w", err)
	}
	if len(b) != 48 {
		return [48]byte{}, fmt.Errorf("rtmr3: read %d bytes, want 48", len(b))
	}
	return [48]byte(b), nil
}
