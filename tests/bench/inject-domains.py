#!/usr/bin/python3
"""Injector for sites-bench.sh: N messages of SIZE body bytes over SESSIONS
parallel SMTP sessions (processes; each reuses its connection), message i
to r<i>@d<i % DOMAINS>.bench. Prints the seconds it took.

    inject-domains.py HOST:PORT N SIZE SESSIONS DOMAINS
"""
import multiprocessing
import smtplib
import sys
import time


def session(args):
    host, port, first, count, step, size, ndomains = args
    body = ("Subject: bench\r\nFrom: bench@bench.example\r\n\r\n" +
            ("x" * 76 + "\r\n") * (size // 78 + 1))[:size].encode()
    s = smtplib.SMTP(host, port, local_hostname="bench-client.example", timeout=120)
    s.ehlo()
    for k in range(count):
        i = first + k * step
        s.sendmail("bench@bench.example", ["r%d@d%04d.bench" % (i, i % ndomains)], body)
    s.quit()


def main():
    hostport, n, size, nsess, ndomains = sys.argv[1:6]
    host, port = hostport.rsplit(":", 1)
    n, size, nsess, ndomains = int(n), int(size), int(nsess), int(ndomains)
    jobs = []
    for s in range(nsess):
        count = len(range(s, n, nsess))
        jobs.append((host, int(port), s, count, nsess, size, ndomains))
    t0 = time.monotonic()
    with multiprocessing.Pool(nsess) as pool:
        pool.map(session, jobs, chunksize=1)
    print("%.3f" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
