#!/usr/bin/python3
"""DNS for sites-bench.sh: D recipient domains d0000.bench ... whose MX
hosts belong to P providers (domain i -> mx.p<i % P>.bench), each MX host
at its own loopback address 127.0.0.<10 + p>. The server is the
integration tests' peer (tests/integration/peers/dns.py, dnslib) on
127.0.0.1; its port is written to PORTFILE. It runs until its standard
input closes or it gets SIGTERM.

    bench-dns.py PORTFILE [DOMAINS] [PROVIDERS]
"""
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from peers.dns import DNSServer  # noqa: E402


def main():
    portfile = sys.argv[1]
    ndomains = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    nprov = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    srv = DNSServer("127.0.0.1")
    for p in range(nprov):
        srv.add("mx.p%d.bench" % p, "A", "127.0.0.%d" % (10 + p), ttl=3600)
    for i in range(ndomains):
        srv.add("d%04d.bench" % i, "MX", (10, "mx.p%d.bench" % (i % nprov)), ttl=3600)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % srv.port)
    os.rename(portfile + ".tmp", portfile)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    srv.stop()


if __name__ == "__main__":
    main()
