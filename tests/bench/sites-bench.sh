#!/usr/bin/env bash
# Scheduler cost: N messages to DOMAINS distinct recipient domains whose MX
# hosts (a real DNS server on loopback, tests/bench/bench-dns.py) belong to
# PROVIDERS providers, so sluiced routes every recipient through an MX
# lookup, maps it to one of PROVIDERS sites and delivers over that site's
# lanes to smtp-sink on 127.0.0.10.. (one sink per provider, one port).
# Prints msgs/s counted at the sinks (first injection to last message
# received), sluiced CPU seconds (utime+stime from /proc) and ms/msg, and
# peak RSS. ROUTE=static sends the same mail through one static route to
# one sink instead (no DNS, one site): the baseline the MX run is compared
# with. WARMUP=1 puts the one source in warm-up (caps far above N, so
# nothing waits): the cost of counting every recipient against its cap.
# PHASED=1 separates the two halves: one message per site first (so the
# sites exist), every site suspended (sluicectl site NAME suspend), the N
# messages injected and routed into the suspended sites' lanes, then all
# sites resumed at once: the second line is delivery alone, from a
# backlog, not bounded by the injector.
#   sites-bench.sh [N] [DOMAINS] [PROVIDERS] [SIZE] [SESSIONS]
#                                        (defaults 20000 1000 5 8192 10)
#   SLUICED (default build/sluiced), ROUTE=mx|static, KEEP=1 keeps the run dir.
set -euo pipefail
N=${1:-20000}
DOMAINS=${2:-1000}
PROVIDERS=${3:-5}
SIZE=${4:-8192}
SESS=${5:-10}
ROUTE=${ROUTE:-mx}
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
SLUICED=${SLUICED:-$srcdir/build/sluiced}
PY=/usr/bin/python3
[ "$PROVIDERS" -ge 1 ] && [ "$PROVIDERS" -le 200 ] || { echo "PROVIDERS must be 1-200" >&2; exit 1; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MTA_PORT=${MTA_PORT:-$(free_port)}
SINK_PORT=${SINK_PORT:-$(free_port)}
dir=$(mktemp -d /tmp/sluice-sites-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT

sinkuser=()
[ "$(id -u)" = 0 ] && sinkuser=(-u postfix)
nsinks=$PROVIDERS
[ "$ROUTE" = static ] && nsinks=1
for ((p = 0; p < nsinks; p++)); do
	smtp-sink -c "${sinkuser[@]}" "127.0.0.$((10 + p)):$SINK_PORT" 256 >"$dir/sink$p.out" 2>&1 &
	pids+=($!)
done

{
	echo "hostname bench-mta.example"
	echo "spool $dir/spool"
	echo "pidfile $dir/sluiced.pid"
	echo "control-socket $dir/control.sock"
	echo "store $dir/store"
	echo "log $dir/sluiced.log"
	echo "log-level warn"
	echo "accounting $dir/events.jsonl"
	echo "listener 127.0.0.1:$MTA_PORT {"
	echo "    relay-from 127.0.0.0/8"
	echo "}"
	echo "domain * {"
	echo "    max-smtp-out ${BENCH_CONNS:-10}"
	echo "    max-msg-per-connection 100000"
	echo "    tls none"
	[ "$ROUTE" = static ] && echo "    route [127.0.0.10]:$SINK_PORT"
	echo "}"
	if [ "${WARMUP:-0}" = 1 ]; then
		echo "source b1 { address 127.0.0.1 warmup bench warmup-start $(date -u +%F) }"
		echo "pool default { source b1 }"
		echo "warmup-schedule bench { day 1 * 1000000000 }"
	fi
	if [ "$ROUTE" != static ]; then
		mkfifo "$dir/dns.in"
		"$PY" "$srcdir/tests/bench/bench-dns.py" "$dir/dns.port" "$DOMAINS" "$PROVIDERS" \
		    <"$dir/dns.in" >"$dir/dns.log" 2>&1 &
		pids+=($!)
		exec 3>"$dir/dns.in"            # the server stops when this closes
		for _ in $(seq 100); do [ -f "$dir/dns.port" ] && break; sleep 0.1; done
		echo "resolver 127.0.0.1:$(cat "$dir/dns.port")"
		echo "smtp-port $SINK_PORT"
		for ((p = 0; p < PROVIDERS; p++)); do
			echo "provider p$p { mx *.p$p.bench }"
		done
	fi
} >"$dir/sluice.conf"

"$SLUICED" -f -c "$dir/sluice.conf" 2>"$dir/stderr" &
spid=$!
pids+=($spid)
for _ in $(seq 100); do
	(exec 4<>/dev/tcp/127.0.0.1/$MTA_PORT) 2>/dev/null && break
	sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
tck=$(getconf CLK_TCK)
sunk() {
	local total=0 n
	for ((p = 0; p < nsinks; p++)); do
		n=$(tr '\r' '\n' <"$dir/sink$p.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)
		total=$((total + ${n:-0}))
	done
	echo "$total"
}

ctl() { "$(dirname "$SLUICED")/sluicectl" -s "$dir/control.sock" "$@"; }
wait_sunk() {
	SECONDS=0
	while [ "$(sunk)" -lt "$1" ]; do
		sleep 0.05
		[ "$SECONDS" -lt 300 ] || { echo "timeout waiting for the sinks ($(sunk) of $1)" >&2; return 1; }
	done
}
base=0
sitenames=()
if [ "${PHASED:-0}" = 1 ]; then
	"$PY" "$srcdir/tests/bench/inject-domains.py" "127.0.0.1:$MTA_PORT" "$nsinks" "$SIZE" 1 "$nsinks" >/dev/null
	base=$nsinks
	wait_sunk "$base"
	mapfile -t sitenames < <(ctl --json sites | "$PY" -c 'import json,sys; [print(s["name"]) for s in json.load(sys.stdin)["sites"]]')
	for s in "${sitenames[@]}"; do ctl site "$s" suspend >/dev/null; done
fi

c0=$(cpu)
t0=$(date +%s.%N)
inj=$("$PY" "$srcdir/tests/bench/inject-domains.py" "127.0.0.1:$MTA_PORT" "$N" "$SIZE" "$SESS" "$DOMAINS")
if [ "${PHASED:-0}" = 1 ]; then
	# every recipient routed into a lane (none left in the retry heaps or DNS)
	SECONDS=0
	until [ "$(ctl --json queue | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["by_state"]["ready"])')" -ge "$N" ]; do
		sleep 0.05
		[ "$SECONDS" -lt 300 ] || { echo "timeout waiting for the lanes" >&2; break; }
	done
	t2=$(date +%s.%N)
	c2=$(cpu)
	for s in "${sitenames[@]}"; do ctl site "$s" resume >/dev/null; done
fi
wait_sunk $((N + base)) || true
t1=$(date +%s.%N)
c1=$(cpu)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
delivered=$(grep -c '"type":"delivery"' "$dir/events.jsonl" || true)
sites=$(grep '"type":"delivery"' "$dir/events.jsonl" | grep -o '"site":"[^"]*"' | sort -u | wc -l)
awk -v n="$N" -v t0="$t0" -v t1="$t1" -v inj="$inj" -v c0="$c0" -v c1="$c1" -v tck="$tck" \
    -v rss="$rss" -v route="$ROUTE" -v warmup="${WARMUP:-0}" -v doms="$DOMAINS" -v sites="$sites" -v size="$SIZE" \
    -v sunk="$(($(sunk) - base))" -v dlv="$((delivered - base))" 'BEGIN {
	wall = t1 - t0; cpu = (c1 - c0) / tck;
	printf "route=%s warmup=%s messages=%d domains=%d sites=%d size=%d sink=%d delivered_events=%d inject=%.2fs end-to-end=%.2fs (%.0f msg/s) sluiced_cpu=%.2fs (%.3f ms/msg) peak_rss=%.0fMB\n",
	    route, warmup, n, doms, sites, size, sunk, dlv, inj, wall, n / wall, cpu, cpu * 1000 / n, rss / 1024 }'
if [ "${PHASED:-0}" = 1 ]; then
	awk -v n="$N" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c0="$c0" -v c1="$c1" -v c2="$c2" \
	    -v tck="$tck" -v sites="${#sitenames[@]}" 'BEGIN {
		printf "  phases: inject+route %.2fs sluiced_cpu=%.2fs (%.3f ms/msg); delivery from %d suspended sites %.2fs (%.0f msg/s) sluiced_cpu=%.2fs (%.3f ms/msg)\n",
		    t2 - t0, (c2 - c0) / tck, (c2 - c0) / tck * 1000 / n, sites, t1 - t2, n / (t1 - t2),
		    (c1 - c2) / tck, (c1 - c2) / tck * 1000 / n }'
fi
