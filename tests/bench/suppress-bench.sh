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

NAME=suppress-bench
. "$srcdir/tests/bench/store-daemon.sh"

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
