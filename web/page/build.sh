#!/bin/sh
# Builds the reviewer's page's verifier (`make page`): web/page/verifier/wasm compiled to
# WebAssembly, and Go's wasm_exec.js from the same toolchain, into web/page/dist/, which
# package page embeds (go:embed) and cocoon-host and `cocoon verify --web` serve.
#
# go-tdx-guest's verifier imports github.com/google/logger, which does not compile for
# js (see web/page/verifier/_logger/setup_js.go). The build therefore uses an alternate
# module file (go build -modfile) that replaces the logger with a copy of the exact
# version go.mod selects, taken from the module cache (checked against go.sum when it
# was downloaded), plus that one file. The repository's go.mod is not touched, and no
# third-party source is committed.
#
# The output is reproducible: -trimpath, no VCS stamp, no build id, relative paths only,
# so the same source and Go version give the same verifier.wasm in any checkout.
set -eu
cd "$(dirname "$0")/../.."
GO=${GO:-go}
build=web/page/build
dist=web/page/dist

rm -rf "$build"
mkdir -p "$build" "$dist"
logger=$($GO list -m -f '{{.Dir}}' github.com/google/logger)
if [ -z "$logger" ]; then
	$GO mod download github.com/google/logger
	logger=$($GO list -m -f '{{.Dir}}' github.com/google/logger)
fi
cp -R "$logger" "$build/logger"
chmod -R u+w "$build/logger"
cp web/page/verifier/_logger/setup_js.go "$build/logger/"
cp go.mod "$build/wasm.mod"
cp go.sum "$build/wasm.sum"
$GO mod edit -modfile="$build/wasm.mod" -replace "github.com/google/logger=./$build/logger"

export GOOS=js GOARCH=wasm CGO_ENABLED=0
$GO vet -modfile="$build/wasm.mod" ./web/page/verifier/...
$GO build -modfile="$build/wasm.mod" -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
	-o "$dist/verifier.wasm.tmp" ./web/page/verifier/wasm
mv "$dist/verifier.wasm.tmp" "$dist/verifier.wasm"
cp "$($GO env GOROOT)/lib/wasm/wasm_exec.js" "$dist/wasm_exec.js"
