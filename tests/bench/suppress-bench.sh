#!/usr/bin/env bash
# Suppression list at scale: import N addresses (default 1,000,000) into a
# fresh sluiced through `sluicectl suppression import` (50,000-line parts)
# and again as one API request, the store's size on disk, an export, then
# lookups per second with suppress-bench (suppress_check() against the same
# store, sluiced stopped). Needs no root and no peers.
#   N             addresses (default 1000000)
#   LOOKUPS       lookups per thread (default 2000000)
set -euo pipefail
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${builddir:-$srcdir/build}
N=${N:-1000000}
LOOKUPS=${LOOKUPS:-2000000}
SLUICED=${SLUICED:-$builddir/sluiced}
SLUICECTL=${SLUICECTL:-$builddir/sluicectl}
BENCH=$builddir/tests/bench/suppress-bench
[ -x "$BENCH" ] || { echo "suppress-bench: $BENCH not built (make tests/bench/suppress-bench)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/suppress-bench.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
cat > "$tmp/sluice.conf" <<CONF
hostname bench.test
workers 2
spool $tmp/spool
pidfile $tmp/sluiced.pid
control-socket $tmp/control.sock
log $tmp/sluiced.log
store $tmp/store
listener 127.0.0.1:$port { relay-from 127.0.0.0/8 }
domain * { route [127.0.0.1]:9 }
CONF

start() {
	"$SLUICED" -f -c "$tmp/sluice.conf" 2>>"$tmp/stderr" &
	pid=$!
	for _ in $(seq 200); do
		"$SLUICECTL" -s "$tmp/control.sock" status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "suppress-bench: sluiced did not start" >&2
	cat "$tmp/stderr" >&2
	exit 1
}
stop() {
	kill "$pid"
	wait "$pid" || true
	pid=
}
ms() { date +%s%3N; }

awk -v n="$N" 'BEGIN { print "address,reason"; for (i = 0; i < n; i++)
	printf "u%07d@list%03d.test,%s\n", i, i % 1000, (i % 3 ? "hard-bounce" : "unsubscribe") }' \
	> "$tmp/list.csv"
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; N=$N ($(du -h "$tmp/list.csv" | cut -f1) CSV)"

start
t0=$(ms)
"$SLUICECTL" -s "$tmp/control.sock" suppression import "$tmp/list.csv" >/dev/null
t1=$(ms)
store_kb=$(du -sk "$tmp/store" | cut -f1)
echo "import (sluicectl, 50k-line parts): $((t1 - t0)) ms, $(( N * 1000 / (t1 - t0) )) addresses/s"
echo "store on disk after import: $((store_kb / 1024)) MB (du -sk $((store_kb)) KB; $(( store_kb * 1024 / N )) bytes/address)"
t0=$(ms)
curl -sS --unix-socket "$tmp/control.sock" -H 'Content-Type: text/csv' --data-binary @"$tmp/list.csv" \
	http://localhost/v1/suppression/import >/dev/null
t1=$(ms)
echo "re-import of the same $N (one API request, entries replaced): $((t1 - t0)) ms"
echo "store on disk after re-import: $(( $(du -sk "$tmp/store" | cut -f1) / 1024 )) MB"
t0=$(ms)
"$SLUICECTL" -s "$tmp/control.sock" suppression export "$tmp/export.csv" >/dev/null
t1=$(ms)
echo "export (CSV, chunked): $((t1 - t0)) ms, $(( $(wc -l < "$tmp/export.csv") - 1 )) entries"
stop

echo "lookups (suppress_check: global + domain + pool keys; half hits, half misses):"
"$BENCH" "$tmp/store" "$LOOKUPS" "$N" 2
