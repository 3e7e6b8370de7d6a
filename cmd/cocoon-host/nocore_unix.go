//go:build unix

package main

import "syscall"

// forbidCoreDumps sets this process's core file limit to 0, soft and hard, so that no
// crash of it (nor of a child, which inherits the limit and cannot raise it) writes a
// core file: one holds the process's memory, the settlement key, the API keys, the
// sealing secret and the prompts in flight in the clear, and lands where the machine's
// owner reads it (the working directory, often the data disk, or systemd-coredump's
// store, which honours the limit). It is not PR_SET_DUMPABLE 0, which would also stop
// cores but makes /proc/self/pagemap unreadable to the process itself, which the
// sandbox's instance reset reads. Cost: one system call at start.
func forbidCoreDumps() error {
	return syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
}
