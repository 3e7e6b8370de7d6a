#!/usr/bin/env bash
# demo-billing.sh (make demo-billing): billing end to end on a local TON network, through
# the real binaries over the real liteserver protocol. It builds cocoon-host and cocoon,
# starts `cocoon-host devnet` and a billing `cocoon-host serve` on free loopback ports,
# opens an escrow, chats with receipts, verifies them, asks for a withdrawal, waits until
# the host's charges are settled on chain, advances the chain's clock past the escrow's
# timeout, withdraws and checks both wallets' balances. It exits 0 with a one-line
# summary, or 1 with the output of the step that failed. Everything it starts is stopped
# on any exit; its files live in a temporary directory, removed at the end (kept, and
# named, when KEEP=1).
#
# The commands of the `step` and `start` lines are the README's "Trying billing locally"
# (scripts/demo_billing_test.go checks that they stay the same), with free ports in place
# of the README's and the model at $COCOON_MODEL_DIR or ../shared/models/stories260K.
set -euo pipefail

GO=${GO:-go}
repo=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${COCOON_MODEL_DIR:-$repo/../shared/models/stories260K}
began=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/demo-billing.XXXXXX")
logs=$work/logs
mkdir -p "$logs"
started=() # pids of what `start` launched

# stop_started stops what `start` launched and waits for it.
stop_started() {
	local pid
	for pid in "${started[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${started[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	started=()
}

stop_all() {
	stop_started
	if [ "${KEEP:-}" = 1 ]; then
		echo "demo-billing: files kept in $work" >&2
	else
		rm -rf "$work"
	fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

fail() {
	echo "demo-billing: FAIL: $*" >&2
	local name
	for name in devnet host; do
		if [ -f "$logs/$name.out" ]; then
			echo "--- last lines of $name's output:" >&2
			tail -n 20 "$logs/$name.out" >&2
		fi
	done
	exit 1
}

# step NAME COMMAND...: runs COMMAND with its output in $logs/NAME.out; on failure shows
# that output and fails.
step() {
	local name=$1
	shift
	echo "+ $*" >&2
	local status=0
	"$@" >"$logs/$name.out" 2>&1 || status=$?
	if [ "$status" -ne 0 ]; then
		cat "$logs/$name.out" >&2
		fail "$name: exit status $status from: $*"
	fi
}

# start NAME COMMAND...: runs COMMAND in the background with its output in
# $logs/NAME.out; stop_all stops it.
start() {
	local name=$1
	shift
	echo "+ $* &" >&2
	"$@" >"$logs/$name.out" 2>&1 &
	started+=($!)
}

# wait_for NAME PATTERN: waits up to a minute for PATTERN in what `start NAME` printed;
# returns 1 if NAME has exited first.
wait_for() {
	local name=$1 pattern=$2 pid=${started[${#started[@]} - 1]} deadline=$((SECONDS + 60))
	until grep -q "$pattern" "$logs/$name.out" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || return 1
		[ "$SECONDS" -lt "$deadline" ] || fail "$name did not print '$pattern' within 60 s"
		sleep 0.2
	done
}

# free_ports VAR...: sets each VAR to a distinct loopback address (127.0.0.1:PORT) that
# nothing listens on, below the kernel's range of ephemeral ports (which outgoing
# connections take without listening). Another process may still take one first: then
# devnet or serve fails to listen, and launch is tried again.
free_ports() {
	local var port taken=" " low _
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
	[ "$low" -gt 12000 ] || low=32768
	for var in "$@"; do
		for _ in $(seq 200); do
			port=$((10000 + RANDOM % (low - 10000)))
			case "$taken" in *" $port "*) continue ;; esac
			if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
				break
			fi
		done
		taken="$taken$port "
		printf -v "$var" '127.0.0.1:%d' "$port"
	done
}

# field FILE KEY: the second word of the first line of FILE whose first word is KEY.
field() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }

# nano FILE: the nanoTON of the "(N nanoTON)" in FILE.
nano() { sed -n 's/.*(\([0-9][0-9]*\) nanoTON).*/\1/p' "$1" | head -n 1; }

# ton N: N nanoTON in TON.
ton() { printf '%d.%09d' $(($1 / 1000000000)) $(($1 % 1000000000)) | sed 's/0*$//; s/\.$//'; }

[ -d "$MODEL" ] ||
	fail "no model at $MODEL: set COCOON_MODEL_DIR to a stories260K folder, or run cocoon-host model pull"
command -v curl >/dev/null || fail "curl is needed: install it (Debian: apt-get install curl)"

echo "+ $GO build -o $work/bin/ ./cmd/cocoon-host ./cmd/cocoon" >&2
(cd "$repo" && "$GO" build -o "$work/bin/" ./cmd/cocoon-host ./cmd/cocoon) || fail "build"
export PATH="$work/bin:$PATH"
cd "$work"

# launch starts the devnet and the billing host on free ports and waits until both
# serve; it returns 1 if either has exited first.
launch() {
	free_ports LITE ADMIN LISTEN
	HOST=http://$LISTEN
	rm -rf .cocoon "$logs/devnet.out" "$logs/host.out"
	start devnet cocoon-host devnet --data .cocoon/devnet --listen "$LITE" --admin "$ADMIN"
	wait_for devnet "advance time" || return 1
	start host cocoon-host serve --config .cocoon/devnet/host-config.json --data .cocoon/devnet-host --listen "$LISTEN" --model-dir "$MODEL" --attest sim
	wait_for host "^Billing:" || return 1
}
for attempt in 1 2 3; do
	launch && break
	stop_started
	# A port taken since free_ports looked: try others. Anything else is a failure.
	grep -qs "address already in use" "$logs/devnet.out" "$logs/host.out" && [ "$attempt" -lt 3 ] ||
		fail "the devnet or the host exited at start"
	echo "demo-billing: a port was taken meanwhile; trying others" >&2
done

step host-before cocoon wallet balance --seed-file .cocoon/devnet/host.seed --ton-config .cocoon/devnet/ton-config.json
step open cocoon channel open --host "$HOST" --trust-sim-root .cocoon/devnet-host/attest/sim-root.pem --seed-file .cocoon/devnet/client.seed --deposit 5 --timeout 1h --ton-config .cocoon/devnet/ton-config.json
ESCROW=$(field "$logs/open.out" escrow)
[ -n "$ESCROW" ] || fail "channel open printed no escrow address"

step chat1 cocoon chat --host "$HOST" --trust-sim-root .cocoon/devnet-host/attest/sim-root.pem --escrow "$ESCROW" --seed-file .cocoon/devnet/client.seed --receipts .cocoon/receipts.jsonl --max-tokens 20 "Once upon a time"
step chat2 cocoon chat --host "$HOST" --trust-sim-root .cocoon/devnet-host/attest/sim-root.pem --escrow "$ESCROW" --seed-file .cocoon/devnet/client.seed --receipts .cocoon/receipts.jsonl --max-tokens 20 "The little dog"
step chat3 cocoon chat --host "$HOST" --trust-sim-root .cocoon/devnet-host/attest/sim-root.pem --escrow "$ESCROW" --seed-file .cocoon/devnet/client.seed --receipts .cocoon/receipts.jsonl --max-tokens 20 "Lily found a box"
step receipts cocoon receipts --host "$HOST" --trust-sim-root .cocoon/devnet-host/attest/sim-root.pem --escrow "$ESCROW" --seed-file .cocoon/devnet/client.seed
step saved-receipts cocoon receipts --file .cocoon/receipts.jsonl
total=$(nano "$logs/receipts.out")
[ -n "$total" ] && [ "$total" -gt 0 ] || fail "receipts printed no total charged"
grep -q "signatures: 3 receipts" "$logs/receipts.out" || fail "the host's receipts are not the three chats': $(cat "$logs/receipts.out")"
grep -q "($total nanoTON)" "$logs/saved-receipts.out" || fail "the receipts chat saved do not add up to the host's $total nanoTON"

# Three chats are far below the host's settlement threshold (1 TON): nothing is charged
# on chain until the client asks for a withdrawal.
step unsettled cocoon channel status --escrow "$ESCROW" --ton-config .cocoon/devnet/ton-config.json
[ "$(field "$logs/unsettled.out" charged)" = 0.0 ] || fail "the escrow was charged before the withdrawal request: $(cat "$logs/unsettled.out")"

step request cocoon channel withdraw --escrow "$ESCROW" --seed-file .cocoon/devnet/client.seed --ton-config .cocoon/devnet/ton-config.json
grep -q "withdrawal requested" "$logs/request.out" || fail "channel withdraw did not request the withdrawal"

# The host's settler charges a closing escrow at its next round (settle_interval, 2 s in
# devnet's host config): wait until the chain and the host both show the whole total.
deadline=$((SECONDS + 60))
while :; do
	step status cocoon channel status --escrow "$ESCROW" --ton-config .cocoon/devnet/ton-config.json --host "$HOST" --seed-file .cocoon/devnet/client.seed
	if [ "$(field "$logs/status.out" charged)" = "$(ton "$total")" ] && [ "$(field "$logs/status.out" settled)" = "$(ton "$total")" ]; then
		break
	fi
	[ "$SECONDS" -lt "$deadline" ] || fail "the host's charges ($(ton "$total") TON) were not settled on chain within 60 s of the withdrawal request: $(cat "$logs/status.out")"
	sleep 1
done
deposited=$(field "$logs/status.out" deposited)

step client-before cocoon wallet balance --seed-file .cocoon/devnet/client.seed --ton-config .cocoon/devnet/ton-config.json
step advance curl -fsS -X POST "http://$ADMIN/v1/advance?by=61m"
step withdraw cocoon channel withdraw --escrow "$ESCROW" --seed-file .cocoon/devnet/client.seed --ton-config .cocoon/devnet/ton-config.json
grep -q "withdrawn: escrow" "$logs/withdraw.out" || fail "channel withdraw did not withdraw: $(cat "$logs/withdraw.out")"
step client-after cocoon wallet balance --seed-file .cocoon/devnet/client.seed --ton-config .cocoon/devnet/ton-config.json
step host-after cocoon wallet balance --seed-file .cocoon/devnet/host.seed --ton-config .cocoon/devnet/ton-config.json

# The client got its deposit back less the charges (and the escrow's gas reserve, at
# most 0.1 TON, less the withdrawal's fees); the host's wallet gained the charges less
# the gas of the charge message.
unspent=$((5000000000 - total))
refund=$(($(nano "$logs/client-after.out") - $(nano "$logs/client-before.out")))
gain=$(($(nano "$logs/host-after.out") - $(nano "$logs/host-before.out")))
[ "$refund" -ge "$unspent" ] && [ "$refund" -le $((unspent + 100000000)) ] ||
	fail "the client wallet got $refund nanoTON back; want the unspent $unspent and at most 0.1 TON of the escrow's reserve"
[ "$gain" -gt 0 ] && [ "$gain" -le "$total" ] ||
	fail "the host wallet gained $gain nanoTON for charges of $total"

echo "demo-billing: ok in $((SECONDS - began)) s: escrow $ESCROW, deposited $deposited TON; 3 chats, 3 receipts verified, $(ton "$total") TON charged and settled on chain after the withdrawal request; after the 1 h timeout the client got $(ton "$refund") TON back and the host wallet gained $(ton "$gain") TON (its charges less gas)"
