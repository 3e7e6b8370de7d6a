//go:build wasip1

package stream

import "github.com/cocoonhost/cocoon/abi/guest/internal/hook"

//go:wasmexport cocoon_chunk
func cocoonChunk(ptr, n uint32) int64 {
	return hook.Run("cocoon_chunk", ptr, n, chunkHandler)
}

//go:wasmexport cocoon_end
func cocoonEnd() int64 {
	return hook.Run("cocoon_end", 0, 0, endHandler)
}
