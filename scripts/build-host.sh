#!/usr/bin/env bash
# Builds cocoon-host reproducibly: the same source and the same Go toolchain give the same
# bytes in any checkout, on any machine, whatever the caller's environment, so a reviewer
# can rebuild the host and compare its sha256 with the host-binary event a host's
# evidence measures (README, "Rebuilding the host").
#
#   HOST_GO_VERSION=go1.26.8 scripts/build-host.sh OUTPUT     (make host runs this)
#
# It refuses (exit 1, nothing written) when the go command cannot run exactly
# HOST_GO_VERSION: another toolchain gives other bytes.
set -euo pipefail

out=${1:?usage: HOST_GO_VERSION=goX.Y.Z $0 OUTPUT}
want=${HOST_GO_VERSION:?HOST_GO_VERSION names the Go toolchain the host is built with, such as go1.26.8}
GO=${GO:-go}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")/.."

# Every setting that changes the bytes is fixed here. GOENV=off ignores the user's
# `go env -w` settings (GOFLAGS, GOAMD64, GOEXPERIMENT, ...); the variables below
# override the caller's. GOTOOLCHAIN makes the go command run exactly this release: the
# installed one when it is that release, else the one it downloads from the Go module
# proxy (checked against the checksum database), else it fails.
export GOENV=off GOTOOLCHAIN="$want" GOFLAGS=-mod=readonly
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOAMD64=v1 GOEXPERIMENT= GOFIPS140=off

if ! have=$("$GO" env GOVERSION 2>&1) || [ "$have" != "$want" ]; then
	echo "build-host: the host is built with $want, and this go command cannot run it: $have" >&2
	echo "build-host: install $want (https://go.dev/dl/) or allow the go command to download it (GOPROXY)" >&2
	exit 1
fi
# -trimpath: no checkout or module cache path in the binary. -buildvcs=false: no commit
# or "modified" stamp, so a copy of the tree without .git builds the same bytes.
# -buildid=: no build id, which hashes the inputs' paths.
# The host embeds the reviewer's page and its verifier (web/page/dist), so both are built
# here, by the same toolchain, before the host: a host built without them, or with ones
# another toolchain built, has other bytes.
GO="$GO" sh web/page/build.sh
"$GO" build -trimpath -buildvcs=false -ldflags=-buildid= -o "$out" ./cmd/cocoon-host
echo "built $out with $have for linux/amd64"
