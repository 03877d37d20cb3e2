#!/usr/bin/python3
"""devsink: a tiny SMTP sink for the sluice quick start.

Accepts every message on 127.0.0.1:2526 (the static route of the built-in
default config and conf/dev.conf) and prints one line per message to
standard output:

    devsink: from=<sender> to=<rcpt>[,<rcpt>...] size=BYTES subject="..."

Nothing is stored. SIGTERM or SIGINT (Ctrl-C) stops it cleanly (exit 0).
Needs Debian's python3-aiosmtpd; run it with /usr/bin/python3:

    /usr/bin/python3 contrib/devsink.py [--host 127.0.0.1] [--port 2526]
"""

import argparse
import asyncio
import email.parser
import email.policy
import signal
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    """aiosmtpd handler: print a summary line, answer 250."""

    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        subject = ""
        try:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)
            subject = str(headers.get("Subject", "") or "")
        except Exception:  # a malformed header block still counts as received
            subject = "?"
        subject = subject.replace("\\", "\\\\").replace('"', '\\"')
        self.count += 1
        print('devsink: from=<%s> to=%s size=%d subject="%s"' % (
            envelope.mail_from or "",
            ",".join("<%s>" % r for r in envelope.rcpt_tos),
            len(data), subject), flush=True)
        return "250 2.0.0 Ok: received by devsink"


async def serve(host, port):
    loop = asyncio.get_running_loop()
    sink = Sink()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="devsink.localhost", enable_SMTPUTF8=True,
                     decode_data=False, data_size_limit=None),
        host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("devsink: listening on %s:%d (Ctrl-C stops)" % (host, port), flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()
    print("devsink: stopped after %d message(s)" % sink.count, flush=True)


def main():
    ap = argparse.ArgumentParser(description="SMTP sink for the sluice quick start: "
                                 "prints one line per received message.")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=2526, help="port to listen on (default 2526)")
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as e:
        print("devsink: cannot listen on %s:%d: %s" % (args.host, args.port, e.strerror or e),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
