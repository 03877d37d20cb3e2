#!/usr/bin/env bash
# Injection throughput: smtp-source -> sluiced (durable spool, fsync) with
# delivery to smtp-sink on loopback. Prints msgs/s accepted (time until
# smtp-source has its last 250), the end-to-end time until the sink has every
# message, and sluiced's CPU seconds (utime+stime from /proc) for the run.
#   inject-bench.sh [N] [SIZE] [SESSIONS]     (defaults 20000 8192 20)
#   BENCH_DKIM=1 signs with a fresh RSA-2048 key.
set -euo pipefail
N=${1:-20000}
SIZE=${2:-8192}
SESS=${3:-20}
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
SLUICED=${SLUICED:-$srcdir/build/sluiced}
MTA_PORT=${MTA_PORT:-2525}
SINK_PORT=${SINK_PORT:-2526}
dir=$(mktemp -d /tmp/sluice-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT

key=""
if [ "${BENCH_DKIM:-0}" = 1 ]; then
	openssl genrsa -out "$dir/dkim.key" 2048 2>/dev/null
	chmod 600 "$dir/dkim.key"
	key="dkim bench.example { selector s1 rsa $dir/dkim.key }"
fi
cat >"$dir/sluice.conf" <<CONF
hostname bench-mta.example
spool $dir/spool
pidfile $dir/sluiced.pid
control-socket $dir/control.sock
store $dir/store
log $dir/sluiced.log
log-level warn
accounting $dir/events.jsonl
listener 127.0.0.1:$MTA_PORT {
    relay-from 127.0.0.0/8
}
domain * {
    route [127.0.0.1]:$SINK_PORT
    max-smtp-out 20
    max-msg-per-connection 100000
    tls none
}
$key
CONF

smtp-sink -c -u postfix 127.0.0.1:$SINK_PORT 256 >"$dir/sink.out" 2>&1 &
pids+=($!)
"$SLUICED" -f -c "$dir/sluice.conf" 2>"$dir/stderr" &
spid=$!
pids+=($spid)
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$MTA_PORT) 2>/dev/null && break
	sleep 0.1
done
cpu() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
tck=$(getconf CLK_TCK)
delivered() { grep -c '"type":"delivery"' "$dir/events.jsonl" 2>/dev/null || echo 0; }

c0=$(cpu)
t0=$(date +%s.%N)
smtp-source -s "$SESS" -m "$N" -l "$SIZE" -d -f bench@bench.example -t rcpt@sink.example \
	127.0.0.1:$MTA_PORT
t1=$(date +%s.%N)
SECONDS=0
while [ "$(delivered)" -lt "$N" ]; do
	sleep 0.05
	[ "$SECONDS" -lt 300 ] || { echo "timeout waiting for deliveries" >&2; break; }
done
t2=$(date +%s.%N)
c1=$(cpu)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
awk -v n="$N" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c0="$c0" -v c1="$c1" -v tck="$tck" -v rss="$rss" \
    -v dkim="${BENCH_DKIM:-0}" -v size="$SIZE" 'BEGIN {
	inj = t1 - t0; e2e = t2 - t0; cpu = (c1 - c0) / tck;
	printf "size=%d dkim=%s messages=%d inject=%.2fs (%.0f msg/s) end-to-end=%.2fs (%.0f msg/s) sluiced_cpu=%.2fs (%.3f ms/msg) peak_rss=%.0fMB\n",
	    size, dkim, n, inj, n / inj, e2e, n / e2e, cpu, cpu * 1000 / n, rss / 1024 }'
