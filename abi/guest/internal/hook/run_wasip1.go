//go:build wasip1

package hook

import (
	"runtime"
	"runtime/metrics"
	"unsafe"

	"github.com/cocoonhost/cocoon/abi/guest"
)

var (
	// input is the buffer handed out by the last cocoon_alloc. Holding it keeps it from
	// being collected while the host writes to it and the hook reads it.
	input []byte
	// output is the last hook's result. The host copies it after the hook returns;
	// holding it until the next call keeps it valid until then.
	output []byte

	// allocs reads the bytes allocated since the program started.
	allocs = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	// allocatedAtGC is the allocs reading after the last collection.
	allocatedAtGC uint64
)

//go:wasmexport cocoon_abi_v1
func abiV1() {}

//go:wasmexport cocoon_alloc
func alloc(size uint32) uint32 {
	// Output pointers are returned in the high half of a non-negative i64 (SPEC.md §3.2),
	// so no buffer may start at or above 2 GiB; Go cannot hand out that much anyway.
	if size > 1<<30 {
		return 0
	}
	input = make([]byte, max(size, 1)) // a 0-size make has no address of its own
	return addr(input)
}

func addr(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// Run serves one hook call: it calls f on the n input bytes at ptr and returns the
// hook's result as SPEC.md §3.2 defines it.
func Run(export string, ptr, n uint32, f Func) int64 {
	output = nil
	in := input
	input = nil
	if n > 0 && (in == nil || ptr != addr(in) || int(n) > len(in)) {
		guest.Errorf("%s: the input (%d bytes at %#x) is not the buffer cocoon_alloc returned", export, n, ptr)
		return -1
	}
	out, ok := Call(export, in[:n:n], f)
	output = out
	collect()
	if !ok {
		return -1
	}
	if len(out) == 0 {
		return 0
	}
	return int64(uint64(addr(out))<<32 | uint64(len(out)))
}

// collect runs the garbage collector once guest.GCThreshold bytes have been allocated
// since it last ran (see the package documentation of guest).
func collect() {
	metrics.Read(allocs)
	now := allocs[0].Value.Uint64()
	if now-allocatedAtGC < guest.GCThreshold {
		return
	}
	runtime.GC()
	allocatedAtGC = now
}

// spareHeapBytes is the free heap the SDK leaves at the end of the module's
// initialization (prepare).
const spareHeapBytes = 2 << 20

func init() { prepare() }

// prepare does, once in the module's initialization, what the first hook call of every
// instance would otherwise do, since the host starts every request's instance from the
// state initialization left (SPEC.md §6): it fills the caches of encoding/json and
// runtime/metrics with a round trip of each chat type, and it grows the heap by
// spareHeapBytes and frees that again, so that a request whose allocations fit in it
// leaves the memory at its initial size, and the host can reset its instance for the
// next request instead of instantiating the module again. The cost is paid once per
// module on a host, and spareHeapBytes of memory per instance, counted against the
// module's memory limit.
func prepare() {
	var req guest.ChatRequest
	_ = req.UnmarshalJSON([]byte(`{"model":"m","messages":[{"role":"user","content":"\n","x":null}],"x":1}`))
	_, _ = guest.Marshal(&req)
	var resp guest.ChatResponse
	_ = resp.UnmarshalJSON([]byte(`{"id":"\n","created":1,"choices":[{"index":0,"message":{"content":[{"type":"text","text":"t"}]}}],"usage":{"total_tokens":1}}`))
	_, _ = guest.Marshal(&resp)
	spare := make([]byte, spareHeapBytes)
	runtime.KeepAlive(spare)
	spare = nil
	runtime.GC()
	metrics.Read(allocs)
	allocatedAtGC = allocs[0].Value.Uint64()
}
