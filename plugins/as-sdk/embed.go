// Package assdk holds the Cocoon SDK for AssemblyScript: its TypeScript sources and
// build options, embedded so that `cocoon init --lang as` can give a new module its own
// copy. The SDK itself is documented in README.md beside this file.
package assdk

import "embed"

// Files are the SDK's files: *.ts, asconfig.json, package.json and README.md, at the
// root of the file system.
//
//go:embed *.ts asconfig.json package.json README.md
var Files embed.FS
