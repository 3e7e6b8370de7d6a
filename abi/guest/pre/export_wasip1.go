//go:build wasip1

package pre

import "github.com/cocoonhost/cocoon/abi/guest/internal/hook"

//go:wasmexport cocoon_pre
func cocoonPre(ptr, n uint32) int64 {
	return hook.Run("cocoon_pre", ptr, n, handler)
}
