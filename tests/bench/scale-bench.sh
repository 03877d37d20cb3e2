#!/usr/bin/env bash
# Scale: a big queue held in memory. Injects MSGS messages x RCPTS recipients
# with smtp-source into sluiced (durable spool) while delivery is held
# (max-msg-rate 1/h on the route: one message an hour reaches the sink, the
# rest wait in the site's ready queue), then measures
#   - sluiced RSS with all of them queued (VmRSS; VmHWM = peak),
#   - `sluicectl queue` response time (best and worst of 5),
#   - restart: SIGTERM, start again, time until GET /v1/queue reports every
#     recipient queued and ready (spool scan + queueing + routing),
#   - RSS after the restart.
#   scale-bench.sh [MSGS] [RCPTS] [SIZE]     (defaults 10000 100 8192)
# One line of results on stdout (anon = RssAnon: the heap, without the
# store's and the binary's file pages); KEEP=1 keeps the run directory,
# SNAP=PREFIX saves sluiced's /proc smaps to PREFIX.queued.smaps and
# PREFIX.restarted.smaps; COLD=1 restarts once more after dropping the page
# cache (restart_cold: every spool file read from the disk; needs root).
set -euo pipefail
MSGS=${1:-10000}
RCPTS=${2:-100}
SIZE=${3:-8192}
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${builddir:-$srcdir/build}
SLUICED=${SLUICED:-$builddir/sluiced}
SLUICECTL=${SLUICECTL:-$builddir/sluicectl}
MTA_PORT=${MTA_PORT:-2535}
SINK_PORT=${SINK_PORT:-2536}
SESS=${SESS:-20}
total=$((MSGS * RCPTS))
dir=$(mktemp -d /tmp/sluice-scale.XXXXXX)
pids=()
spid=
cleanup() {
	for p in "${pids[@]}" $spid; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}" $spid; do wait "$p" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT

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
    max-recipients $((RCPTS > 1000 ? RCPTS : 1000))
    max-connections-per-ip 1000
}
domain * {
    route [127.0.0.1]:$SINK_PORT
    max-msg-rate 1/h
    tls none
}
CONF

smtp-sink -c -u postfix 127.0.0.1:$SINK_PORT 256 >"$dir/sink.out" 2>&1 &
pids+=($!)

start() {
	"$SLUICED" -f -c "$dir/sluice.conf" 2>>"$dir/stderr" &
	spid=$!
}
ctl() { "$SLUICECTL" -s "$dir/control.sock" "$@"; }
queued() {  # recipients ready in sites (all routed and waiting)
	ctl --json queue 2>/dev/null | /usr/bin/python3 -c '
import json, sys
q = json.load(sys.stdin)
print(q["recipients"], q["by_state"]["ready"] + q["by_state"]["in_flight"])' 2>/dev/null || echo "0 0"
}
wait_ready() {  # wait_ready TIMEOUT_S: until every recipient is queued and routed
	local t0=$SECONDS r d
	while :; do
		r=$(queued)
		# what max-msg-rate let through (its burst) is delivered
		d=$(grep -c '"type":"delivery"' "$dir/events.jsonl" 2>/dev/null || true)
		[ $((${r% *} + ${d:-0})) -ge "$total" ] && [ "${r#* }" -ge "${r% *}" ] && return 0
		[ $((SECONDS - t0)) -lt "$1" ] || { echo "timeout: queue at $r of $total" >&2; return 1; }
		sleep 0.1
	done
}
rss() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' "/proc/$spid/status"; }
now() { date +%s.%N; }
ctl_time() {  # best and worst of 5 `sluicectl queue`
	local best=999 worst=0 t0 t
	for _ in 1 2 3 4 5; do
		t0=$(now)
		ctl queue >/dev/null
		t=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}')
		best=$(awk -v a="$best" -v b="$t" 'BEGIN {print (b < a) ? b : a}')
		worst=$(awk -v a="$worst" -v b="$t" 'BEGIN {print (b > a) ? b : a}')
	done
	echo "$best $worst"
}

start
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$MTA_PORT) 2>/dev/null && break
	sleep 0.1
done
t0=$(now)
smtp-source -s "$SESS" -m "$MSGS" -r "$RCPTS" -l "$SIZE" -f bench@bench.example \
	-t rcpt@sink.example 127.0.0.1:$MTA_PORT
t1=$(now)
wait_ready 600
t2=$(now)
read -r nq _ < <(queued)
rss_q=$(rss VmRSS)
hwm_q=$(rss VmHWM)
anon_q=$(rss RssAnon)
[ -z "${SNAP:-}" ] || cat "/proc/$spid/smaps" >"$SNAP.queued.smaps"
read -r q_best q_worst < <(ctl_time)
echo "queued $nq: rss=${rss_q}MB anon=${anon_q}MB queue_cmd=$q_best-${q_worst}s" >&2

# restart with everything queued
kill -TERM "$spid"
wait "$spid" 2>/dev/null || true
t3=$(now)
start
wait_ready 600
t4=$(now)
rss_r=$(rss VmRSS)
hwm_r=$(rss VmHWM)
anon_r=$(rss RssAnon)
[ -z "${SNAP:-}" ] || cat "/proc/$spid/smaps" >"$SNAP.restarted.smaps"
read -r r_best r_worst < <(ctl_time)
files=$(find "$dir/spool/q" -type f ! -name 'f.*' ! -name 't.*' | wc -l)
# COLD=1: once more with the page cache dropped, so the scan reads every
# spool file from the disk (the case after a reboot; needs root)
cold=-1
if [ -n "${COLD:-}" ]; then
	kill -TERM "$spid"
	wait "$spid" 2>/dev/null || true
	sync
	echo 3 >/proc/sys/vm/drop_caches
	t5=$(now)
	start
	wait_ready 600
	cold=$(awk -v a="$t5" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')
	echo "restart_cold=${cold}s" >&2
fi

awk -v m="$MSGS" -v r="$RCPTS" -v n="$total" -v s="$SIZE" -v t0="$t0" -v t1="$t1" -v t2="$t2" \
    -v t3="$t3" -v t4="$t4" -v rq="$rss_q" -v hq="$hwm_q" -v rr="$rss_r" -v hr="$hwm_r" -v aq="$anon_q" -v ar="$anon_r" \
    -v qb="$q_best" -v qw="$q_worst" -v rb="$r_best" -v rw="$r_worst" -v f="$files" -v nq="$nq" -v cold="$cold" 'BEGIN {
	printf "scale msgs=%d rcpts/msg=%d recipients=%d queued=%d size=%d spool_files=%d inject=%.1fs (%.0f msg/s) queued_after=%.1fs " \
	    "rss=%dMB peak=%dMB anon=%dMB (%.0f B/rcpt) queue_cmd=%.3f-%.3fs restart_to_ready=%.1fs rss_after_restart=%dMB peak=%dMB anon=%dMB (%.0f B/rcpt) queue_cmd_after=%.3f-%.3fs%s",
	    m, r, n, nq, s, f, t1 - t0, m / (t1 - t0), t2 - t0, rq, hq, aq, rq * 1048576 / nq, qb, qw,
	    t4 - t3, rr, hr, ar, rr * 1048576 / nq, rb, rw, (cold >= 0 ? " " : "\n")
	if (cold >= 0)
		printf "restart_cold=%.1fs\n", cold }'
