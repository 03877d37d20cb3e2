#!/usr/bin/env bash
# CUSTOM_START for ../shared/bench/run.sh: writes a bench config from the
# harness's environment (MTA_LISTEN RELAY_TO SPOOL_DIR RUN_DIR DKIM_KEY
# DKIM_DOMAIN DKIM_SELECTOR) and runs sluiced in the foreground.
# SLUICED = the binary; BENCH_DKIM=0 to run unsigned; BENCH_VERP=1 to send with
# VERP (bounce-domain, a fresh verp-key: one store record per delivery); SLUICE_WORKERS.
set -euo pipefail
: "${SLUICED:?set SLUICED to the sluiced binary}"
conf=$RUN_DIR/sluice.conf
{
	echo "hostname bench-mta.example"
	echo "spool $SPOOL_DIR"
	echo "pidfile $RUN_DIR/sluiced.pid"
	echo "control-socket $RUN_DIR/control.sock"
	echo "store $RUN_DIR/store"
	echo "log $RUN_DIR/sluiced.log"
	echo "log-level ${BENCH_LOG_LEVEL:-warn}"
	echo "accounting $RUN_DIR/events.jsonl"
	echo "workers ${SLUICE_WORKERS:-auto}"
	echo "listener $MTA_LISTEN {"
	echo "    relay-from 127.0.0.0/8"
	echo "    max-connections-per-ip 1000"
	echo "}"
	echo "domain * {"
	echo "    route [${RELAY_TO%:*}]:${RELAY_TO##*:}"
	echo "    max-smtp-out ${BENCH_CONNS:-20}"
	echo "    max-msg-per-connection 100000"
	echo "    tls none"
	echo "}"
	if [ "${BENCH_VERP:-0}" = 1 ]; then
		head -c 32 /dev/urandom >"$RUN_DIR/verp.key"
		chmod 600 "$RUN_DIR/verp.key"
		echo "bounce-domain bounces.bench-mta.example"
		echo "verp-key $RUN_DIR/verp.key"
	fi
	if [ "${BENCH_DKIM:-1}" = 1 ] && [ -n "${DKIM_KEY:-}" ] && [ -f "$DKIM_KEY" ]; then
		install -m 600 "$DKIM_KEY" "$RUN_DIR/dkim.key"
		echo "dkim $DKIM_DOMAIN {"
		echo "    selector $DKIM_SELECTOR rsa $RUN_DIR/dkim.key"
		echo "}"
	fi
} >"$conf"
exec "$SLUICED" -f -c "$conf"
