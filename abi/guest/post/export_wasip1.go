//go:build wasip1

package post

import "github.com/cocoonhost/cocoon/abi/guest/internal/hook"

//go:wasmexport cocoon_post
func cocoonPost(ptr, n uint32) int64 {
	return hook.Run("cocoon_post", ptr, n, handler)
}
