// Package csdk holds the Cocoon SDK for C (cocoon.h, cocoon_json.h), embedded so that
// `cocoon init --lang c` can give a new module its own copy: with it, the module builds
// anywhere with clang alone.
package csdk

import "embed"

// Files are the SDK's headers, at the root of the file system.
//
//go:embed *.h
var Files embed.FS
