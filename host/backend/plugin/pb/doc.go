// Package pb is the Go code that protoc generates from ../proto/backend.proto, the
// published contract of out-of-process backends (package cocoon.backend.v1). Do not edit
// the .pb.go files: change the .proto and run `go generate ./host/backend/plugin` (the
// command is in that package's documentation).
package pb
