//go:build wasip1

package host

import "unsafe"

//go:wasmimport cocoon log
func hostLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport cocoon reject
func hostReject(status int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport cocoon config
func hostConfig(ptr unsafe.Pointer, capacity uint32) uint32

// Log calls cocoon.log.
func Log(level int32, msg string) {
	hostLog(level, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

// Reject calls cocoon.reject.
func Reject(status int32, msg string) {
	hostReject(status, unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

// Config returns a copy of the module's config, nil if it has none.
func Config() []byte {
	n := hostConfig(nil, 0)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	// The config is fixed for the instance's life, so the second call returns n again.
	return b[:min(n, hostConfig(unsafe.Pointer(unsafe.SliceData(b)), n))]
}
