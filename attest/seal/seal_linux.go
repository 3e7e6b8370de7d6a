package seal

import (
	"errors"
	"fmt"
	"syscall"
)

// Magic numbers of the memory-backed file systems (statfs(2) f_type).
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// checkMemoryBacked fails unless path is on tmpfs or ramfs.
func checkMemoryBacked(path string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return err
	}
	switch uint32(st.Type) {
	case tmpfsMagic, ramfsMagic:
		return nil
	}
	return fmt.Errorf("%w (file system type %#x)", errDiskBacked, uint32(st.Type))
}

var errDiskBacked = errors.New("not in memory-backed storage (tmpfs or ramfs): a root sealing secret must never be on a disk the machine's owner can read")
