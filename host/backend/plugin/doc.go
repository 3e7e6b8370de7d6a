// Package plugin runs an inference backend in a separate process, so that a crash, a
// leak or a third-party engine never takes the attested host down. It speaks
// github.com/hashicorp/go-plugin's gRPC protocol with automatic mutual TLS; the contract
// is proto/backend.proto (package cocoon.backend.v1), which any language can implement.
//
// The host side is [Launch]: it starts the plugin program, returns a [backend.Backend]
// that forwards every call to it, and supervises the process. When the process dies,
// calls in flight fail at once with a [backend.CodeUnavailable] error, and the next call
// starts a new process; a program that keeps failing is restarted with growing pauses
// instead of in a loop. The host's built-in backends run the same way by re-executing
// the host's own binary ([SelfCommand]).
//
// The plugin side is [Serve], which serves any [backend.Backend]. A third party's
// complete backend program:
//
//	package main
//
//	import (
//		"context"
//		"strings"
//
//		"github.com/cocoonhost/cocoon/host/backend"
//		"github.com/cocoonhost/cocoon/host/backend/plugin"
//	)
//
//	// echo answers with the last message, word by word.
//	type echo struct{}
//
//	func (echo) Generate(ctx context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
//		if len(req.Messages) == 0 {
//			return backend.Result{}, backend.Errorf(backend.CodeInvalidRequest, "no messages")
//		}
//		words := strings.Fields(req.Messages[len(req.Messages)-1].Content)
//		for i, w := range words {
//			if err := ctx.Err(); err != nil {
//				return backend.Result{}, err
//			}
//			if i > 0 {
//				w = " " + w
//			}
//			if err := emit(w); err != nil {
//				return backend.Result{}, err
//			}
//		}
//		return backend.Result{FinishReason: "stop", Model: "echo",
//			Usage: backend.Usage{PromptTokens: len(words), CompletionTokens: len(words)}}, nil
//	}
//
//	func (echo) Models(context.Context) ([]backend.Model, error) {
//		return []backend.Model{{ID: "echo", OwnedBy: "example"}}, nil
//	}
//
//	func (echo) Health(context.Context) error { return nil }
//	func (echo) Close() error                 { return nil }
//
//	func main() { plugin.Serve(echo{}) }
//
// The host then runs it with
//
//	b, err := plugin.Launch(exec.Command("/usr/lib/cocoon/echo-backend"), nil)
//
// A plugin logs to its standard error (log/slog's default logger does) and the host
// copies each line to its logger: at debug level, unless the line is in hclog's JSON
// format or starts with [ERROR], [WARN], [INFO] or "panic:", which set the level. What
// the plugin writes to its standard output after Serve starts is logged at info level.
// Run directly, without the host's handshake, the program says it is a plugin and
// exits with status 1.
//
// The generated Go code of the contract is in package pb, committed so that building
// needs no protoc. To regenerate it, with protoc 3.21 or later and $(go env GOPATH)/bin
// on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./host/backend/plugin
package plugin

//go:generate protoc --proto_path=proto --go_out=pb --go_opt=paths=source_relative --go-grpc_out=pb --go-grpc_opt=paths=source_relative backend.proto
