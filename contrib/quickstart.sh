#!/usr/bin/env bash
# Quick start for a fresh Debian 12 machine: install the dependencies, build,
# start a local sink on 127.0.0.1:2526 and sluiced on its built-in default
# config (listens on 127.0.0.1:2525, spools under ./queue, relays everything
# to the sink), send one message through it and show it arrive. sluiced keeps
# running in the foreground (accounting events on stdout) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

contrib/install-deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"
cd "$top"

pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM

/usr/bin/python3 contrib/devsink.py --host 127.0.0.1 --port 2526 &
pids+=($!)
build/sluiced -f &
pids+=($!)

for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break
	sleep 0.2
done
/usr/bin/python3 - <<'PY'
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "newcomer@example.com"
m["To"] = "friend@example.net"
m["Subject"] = "Hello from sluice"
m.set_content("This message went through sluiced to the local sink.\n")
with smtplib.SMTP("127.0.0.1", 2525) as s:
    s.send_message(m)
print("quickstart: sent one message to sluiced on 127.0.0.1:2525; watch it reach the sink above")
print("quickstart: send more with: swaks --server 127.0.0.1:2525 --to you@example.net ; Ctrl-C stops")
PY
wait "${pids[1]}"
