// Package secretfile holds the one check that a file holding a secret (a key, a
// wallet's seed words, a root sealing secret) is readable by its owner alone, shared by
// the commands (cli.ReadPrivateFile) and the host's sealing (seal.FromFile), so that
// both refuse the same modes with the same advice.
package secretfile

import (
	"fmt"
	"io/fs"
	"runtime"
)

// CheckMode refuses the file at path, of info, when users other than its owner may read
// it (group or other read bit): on a shared machine they would read the secret too, as
// ssh refuses such a private key. The error says how to fix the mode and never holds
// the file's content; callers prefix it with what the file is. It costs nothing (info
// is already at hand). Where permissions are not Unix ones (Windows) it accepts every
// mode.
func CheckMode(path string, info fs.FileInfo) error {
	if perm := info.Mode().Perm(); perm&0o044 != 0 && runtime.GOOS != "windows" {
		return fmt.Errorf("other users of this machine can read it (mode %04o): chmod 600 %s", perm, path)
	}
	return nil
}
