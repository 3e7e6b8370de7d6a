package abi

import "embed"

// GuestSDK is the source of the Go guest SDK: package guest (abi/guest) and its packages
// pre, post, stream, guesttest and the internal ones they use, under guest/, with their
// tests. `cocoon init --lang go` writes a copy (tests left out) beside a new module, so
// that the module builds outside this repository: github.com/cocoonhost/cocoon is not
// published, and the copy is what its go.mod replaces it with. A package added to the
// SDK must be added here, or scaffolded modules that import it do not build (TestInit,
// cmd/cocoon). Programs that do not read it do not carry it: the linker drops it.
//
//go:embed guest/*.go guest/pre/*.go guest/post/*.go guest/stream/*.go guest/guesttest/*.go guest/internal/hook/*.go guest/internal/host/*.go
var GuestSDK embed.FS
