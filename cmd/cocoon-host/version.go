package main

import (
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
)

func init() {
	register("version", "print the version, the Go toolchain and this binary's measurement (also --version)", runVersion)
}

// runVersion prints cli.VersionLine and the measurement:
//
//	cocoon-host 0.11.0 go1.26.8 linux/amd64
//	host-binary sha256:<64 hex>
//
// The second line is the measurement of this very executable, computed by the code
// that measures the host-binary event at boot (attest.ExecutableSHA256), in the form a
// policy's host_binary pins it. Cost: one read of the binary. It fails when the binary
// cannot be read.
func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(`version

Prints the version, the Go toolchain and platform this binary was built with, and its
measurement: the sha256 of the executable as the host-binary event of the event log
measures it. Compare it with a rebuild ('make host') and with what 'cocoon verify' reports.`, stderr)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	sum, err := attest.ExecutableSHA256()
	if err != nil {
		return fmt.Errorf("measure this binary: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n%s sha256:%s\n", cli.VersionLine("cocoon-host"), attest.EventHostBinary, hex.EncodeToString(sum[:]))
	return err
}
