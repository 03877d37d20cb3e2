#!/usr/bin/env bash
# Campaigns at scale: a fresh sluiced gets engagement history for R
# recipients (E events, sluicectl events import), then one campaign of N
# recipients (default 1,000,000) in one streamed request (sluicectl campaign
# create) with send-time optimisation over 24 h (nothing is due, so this
# measures ingestion: parse, variable checks, planning, durable writes).
# Reports the ingestion rate, sluiced's peak memory, the store on disk,
# then campaign-bench (sluiced stopped) for the decision cost, the planning
# time of 1M and the bytes per record. Needs no root and no peers.
#   N   campaign recipients (default 1000000)
#   R   recipients with history (default 200000), E events (default 1000000)
set -euo pipefail
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${builddir:-$srcdir/build}
N=${N:-1000000}
R=${R:-200000}
E=${E:-1000000}
SLUICED=${SLUICED:-$builddir/sluiced}
SLUICECTL=${SLUICECTL:-$builddir/sluicectl}
BENCH=$builddir/tests/bench/campaign-bench
[ -x "$BENCH" ] || { echo "campaign-bench: $BENCH not built (make tests/bench/campaign-bench)" >&2; exit 1; }

NAME=campaign-bench
. "$srcdir/tests/bench/store-daemon.sh"
rss() { awk '/^VmHWM|^RssAnon|^RssFile/ { printf "%s %d MB  ", $1, $2 / 1024 }' "/proc/$pid/status"; }

# history: R recipients, E opens/clicks over the last 8 weeks, each at one
# of three favourite hours; every tenth recipient in one of 20 segments
awk -v r="$R" -v e="$E" 'BEGIN { srand(7); now = systime();
	for (k = 0; k < e; k++) { i = int(rand() * r); h = (i * 7919 + int(rand() * 3) * 11) % 168;
		t = now - int(rand() * 8) * 604800 - ((now / 3600 + 72) % 168 - h + 168) % 168 * 3600 - int(rand() * 3600);
		printf "{\"type\":\"%s\",\"email\":\"u%d@dst.test\",\"time\":\"%s\"}\n",
		    (k % 5 ? "open" : "click"), i, strftime("%Y-%m-%dT%H:%M:%SZ", t, 1) } }' > "$tmp/events.ndjson"
awk -v n="$N" 'BEGIN {
	printf "{\"id\":\"bench\",\"from\":\"news@src.test\",\"subject\":\"Hello {{name}}\",\"text\":\"Hi {{name}}, code {{code}}\",\"start_at\":\"2100-01-04T00:00:00Z\",\"max_delay\":\"24h\"}\n";
	for (i = 0; i < n; i++) {
		if (i % 10 == 0) printf "{\"email\":\"u%d@dst.test\",\"segment\":\"seg%d\",\"vars\":{\"name\":\"User %d\",\"code\":%d}}\n", i, (i / 10) % 20, i, i;
		else printf "{\"email\":\"u%d@dst.test\",\"vars\":{\"name\":\"User %d\",\"code\":%d}}\n", i, i, i } }' > "$tmp/campaign.ndjson"
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; N=$N recipients ($(du -h "$tmp/campaign.ndjson" | cut -f1) NDJSON), history: $E events over $R recipients"

start
echo "sluiced at start: $(rss)"
t0=$(ms)
"$SLUICECTL" -s "$tmp/control.sock" events import "$tmp/events.ndjson" >/dev/null
t1=$(ms)
echo "events import: $((t1 - t0)) ms, $(( E * 1000 / (t1 - t0) )) events/s"
eng_kb=$(du -sk "$tmp/store" | cut -f1)
t0=$(ms)
"$SLUICECTL" -s "$tmp/control.sock" campaign create "$tmp/campaign.ndjson" >/dev/null
t1=$(ms)
echo "campaign ingestion (one streamed request, STO 24h, durable): $((t1 - t0)) ms, $(( N * 1000 / (t1 - t0) )) recipients/s"
echo "sluiced after ingestion: $(rss)"
all_kb=$(du -sk "$tmp/store" | cut -f1)
echo "store on disk: $((eng_kb / 1024)) MB after the history, $((all_kb / 1024)) MB with the campaign ($(( (all_kb - eng_kb) * 1024 / N )) bytes per campaign recipient)"
t0=$(ms)
"$SLUICECTL" -s "$tmp/control.sock" campaign status bench >/dev/null
t1=$(ms)
echo "campaign status: $((t1 - t0)) ms"
stop

"$BENCH" "$tmp/store" "$R" 200000
