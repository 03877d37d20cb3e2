# Sourced by the store benchmarks (suppress-bench.sh, campaign-bench.sh):
# a scratch directory, a sluiced config with a store and no delivery, and
# start/stop/ms helpers. Set NAME, SLUICED and SLUICECTL first.
tmp=$(mktemp -d "/tmp/$NAME.XXXXXX")
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
	echo "$NAME: sluiced did not start" >&2
	cat "$tmp/stderr" >&2
	exit 1
}
stop() {
	kill "$pid"
	wait "$pid" || true
	pid=
}
ms() { date +%s%3N; }
