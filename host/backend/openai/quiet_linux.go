package openai

import "syscall"

// canQuiet: Linux (4.18 and later) tells a TCP socket's poller of nothing below its
// SO_RCVLOWAT; earlier kernels still wake it, which costs what not quieting costs.
const canQuiet = true

func setLowWater(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
}
