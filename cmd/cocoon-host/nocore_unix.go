//go:build unix

package main

import "syscall"

// forbidCoreDumps sets this process's core file limit to 0, so that no crash of it
// (nor of a child, which inherits the limit) writes a core file: one holds the
// process's memory, the settlement key, the API keys, the sealing secret and the
// prompts in flight in the clear, and lands where the machine's owner reads it (the
// working directory, often the data disk, or systemd-coredump's store, which honours
// the limit). The soft limit is what the kernel applies, and only this process tree
// could raise it again; the hard limit is left alone, so that a test process that runs
// commands in process can still start a child with cores allowed. It is not
// PR_SET_DUMPABLE 0, which would also stop cores but makes /proc/self/pagemap
// unreadable to the process itself, which the sandbox's instance reset reads. Cost: two
// system calls at start.
func forbidCoreDumps() error {
	var limit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &limit); err != nil {
		return err
	}
	limit.Cur = 0
	return syscall.Setrlimit(syscall.RLIMIT_CORE, &limit)
}
