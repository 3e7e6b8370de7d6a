#!/usr/bin/env bash
# Runs every fuzz target of the module, each for FUZZTIME (default 60s), one after the
# other (go test fuzzes one target per run). Targets are discovered, not listed: every
# Fuzz* function that `go test -list` finds in a package of ./... runs, so a new one
# needs no change here.
#
#   scripts/fuzz.sh                  (make fuzz)
#   FUZZTIME=10s scripts/fuzz.sh     a quick pass
#   scripts/fuzz.sh ./attest/...     only these packages
#
# FUZZMINIMIZETIME (default 1s) bounds how long go test shrinks each new input. Its own
# default, a minute per input, spends a short FUZZTIME shrinking the first few inputs of
# a target whose runs are slow or whose inputs are large (a quote of kilobytes): the
# attest targets ran a dozen inputs in ten seconds and never reached the ones that
# crashed ParseQuote.
#
# It runs every target even after a failure, then lists the failures and exits 1. A
# failing input is written to the package's testdata/fuzz/<target>/ by go test: commit
# it with the fix, and every later `go test` runs it as a regression case.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1s}
[ $# -gt 0 ] || set -- ./...

# Packages that have test files; go test -list compiles and lists each one's tests.
packages=$("$GO" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "$@")
targets=()
for pkg in $packages; do
	listed=$("$GO" test -list '^Fuzz' "$pkg")
	for name in $(grep '^Fuzz' <<<"$listed" || true); do
		targets+=("$pkg $name")
	done
done
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets in $*" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, $FUZZTIME each, inputs shrunk for at most $FUZZMINIMIZETIME"
# fuzz runs one target, its output shown and kept in $log.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fuzz() {
	"$GO" test -run='^$' -fuzz="^$1\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$FUZZMINIMIZETIME" "$2" 2>&1 | tee "$log"
}
failed=()
for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	echo "fuzz: $name ($pkg)"
	if fuzz "$name" "$pkg"; then
		continue
	fi
	# go test sometimes reports a target whose time ran out while its workers were
	# still starting as failed ("context deadline exceeded"), with no failing input:
	# that is not a finding, so the target runs once more.
	if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
		echo "fuzz: $name ran out of time without a failing input (go test's deadline); running it again"
		fuzz "$name" "$pkg" && continue
	fi
	failed+=("$name ($pkg)")
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
