#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, which `make test` runs first: the compilers of
# the example and test modules (clang-14, lld-14, wabt, Debian's rustc with its wasm32
# std), Node.js and npm (the OpenAI SDK test, the AssemblyScript and contract compilers),
# and Debian's chromium (the reviewer's page's browser test). The npm packages come from
# their lock files through the Makefile's node_modules rules.
#
# On Debian it installs what is missing with apt-get (as root, or through sudo). Where it
# cannot (another system, no root and no sudo) it installs nothing and exits 1 with one
# line naming what to install. Nothing is done when everything is there, so it is cheap
# to run before every test run.
set -euo pipefail

need=()
command -v wat2wasm >/dev/null || need+=(wabt)
command -v clang-14 >/dev/null || need+=(clang-14)
command -v wasm-ld-14 >/dev/null || [ -x /usr/lib/llvm-14/bin/wasm-ld ] || need+=(lld-14)
# Debian's rustc, by path like the Makefile's RUSTC: a rustup toolchain gives other bytes.
[ -x /usr/bin/rustc ] || need+=(rustc)
[ -d /usr/lib/rustlib/wasm32-unknown-unknown ] || need+=(libstd-rust-dev-wasm32)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
# curl drives the local TON network's admin API in scripts/demo-billing.sh.
command -v curl >/dev/null || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo=sudo
	else
		sudo=none
	fi
fi
if ! command -v apt-get >/dev/null || [ "$sudo" = none ]; then
	echo "make test needs: ${need[*]} (Debian package names; as root: apt-get install ${need[*]})" >&2
	exit 1
fi
echo "make test: installing ${need[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
