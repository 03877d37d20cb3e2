"""Fixtures for sluice's integration tests: a real sluiced against real
peers on loopback (DNS server, SMTP receivers, a CA for TLS).

    def test_relay(sluiced, receiver):
        rx = receiver()
        d = sluiced(route_conf(rx))
        d.send("a@src.test", "b@dst.test", "Subject: hi\\r\\n\\r\\nhello\\r\\n")
        assert rx.wait_for(1)[0].rcpt_tos == ["b@dst.test"]

Binaries: $SLUICED (else <repo>/build/sluiced) and $SLUICECTL (else
sluicectl next to sluiced). Timeouts are tripled when ASAN_OPTIONS is set.
Every process and thread a fixture starts is stopped at teardown; a
sluiced that does not exit 0 on SIGTERM, or left a sanitizer report, fails
the test in teardown. The peers live in peers/ (proved by
test_peers_selftest.py).
"""

import os
import shutil
import tempfile

import pytest

from peers import (DNSServer, Receiver, Sluiced, TestCA, dkim_verify,  # noqa: F401
                   free_port, make_dkim_key, scaled, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# The smallest useful config: a relay listener for loopback clients. The
# fixture adds spool, pidfile, log, accounting, control-socket and store
# lines (and resolver when a dns_server is in use) unless the text has them.
BASE_CONF = """\
hostname mta.test
workers 2
log-level debug
listener 127.0.0.1:{port} {
    relay-from 127.0.0.0/8
}
"""

# Quick retries so transient-failure tests finish in seconds.
FAST_RETRY = "retry-after 1s,2s bounce-after 30s"


def route_conf(rx, extra="", base=BASE_CONF):
    """BASE_CONF plus `domain *` routing everything to a receiver (or to a
    port number) with FAST_RETRY; extra goes inside the domain block."""
    port = rx if isinstance(rx, int) else rx.port
    host = "127.0.0.1" if isinstance(rx, int) else rx.host
    return base + "domain * { route [%s]:%d %s %s }\n" % (host, port, FAST_RETRY, extra)


def mx_conf(smtp_port, extra="", base=BASE_CONF):
    """BASE_CONF plus direct (MX) delivery: resolver = the dns_server
    fixture, remote SMTP port smtp_port (a receiver's port; receivers for
    several MXs share one port on 127.0.0.x addresses)."""
    port = smtp_port if isinstance(smtp_port, int) else smtp_port.port
    return base + ("resolver 127.0.0.1:{dns_port}\nsmtp-port %d\n"
                   "domain * { %s %s }\n" % (port, FAST_RETRY, extra))


def _binary(env, default):
    path = os.environ.get(env)
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail("%s=%s is not an executable" % (env, path))
        return path, True
    return default, os.access(default, os.X_OK)


def pytest_report_header(config):
    return "sluiced: %s  sluicectl: %s  timeout scale: %s" % (
        os.environ.get("SLUICED", os.path.join(REPO, "build", "sluiced")),
        os.environ.get("SLUICECTL", "(next to sluiced)"), scaled(1))


# ---- certificates -----------------------------------------------------------------
@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """CA + server cert for mx.test, localhost, *.test, 127.0.0.1:
    .ca_cert .cert .key .dir .pair, .make_cert(names) -> (cert, key)."""
    return TestCA(tmp_path_factory.mktemp("ca"))


# ---- DNS --------------------------------------------------------------------------
@pytest.fixture
def dns_server():
    """Authoritative DNS on 127.0.0.1:.port (UDP+TCP): .add(), .set_behaviour(),
    .queries."""
    srv = DNSServer("127.0.0.1")
    yield srv
    srv.stop()


# ---- SMTP receivers -----------------------------------------------------------------
@pytest.fixture
def receiver():
    """Factory: rx = receiver(host='127.0.0.1', port=None, **behaviour)."""
    started = []

    def make(host="127.0.0.1", port=None, **behaviour):
        rx = Receiver(host=host, port=port, **behaviour)
        started.append(rx)
        return rx

    yield make
    errors = []
    for rx in started:
        try:
            rx.stop()
        except Exception as e:          # keep stopping the others
            errors.append("%r: stop failed: %r" % (rx, e))
        errors.extend("%r: %s" % (rx, e) for e in rx.errors)
    if errors:
        pytest.fail("receiver fixture problems:\n" + "\n".join(errors), pytrace=False)


# ---- sluiced --------------------------------------------------------------------------
@pytest.fixture
def sluiced_bin():
    """(sluiced, sluicectl) paths; skips when not built and not named in env."""
    d, ok = _binary("SLUICED", os.path.join(REPO, "build", "sluiced"))
    if not ok:
        pytest.skip("sluiced not built (%s); set SLUICED" % d)
    c, ok = _binary("SLUICECTL", os.path.join(os.path.dirname(d), "sluicectl"))
    return d, c


@pytest.fixture
def sluiced(request, tmp_path, sluiced_bin, receiver):
    """Factory: d = sluiced(conf, wait=True, start=True, **placeholders).
    conf is a template: {tmp} {spool} {port} {control} {pidfile} {log}
    {acct} {store} {dns_port} and any extra keyword are substituted."""
    # (receiver is requested so that receivers are torn down after sluiced)
    instances = []
    scratch = []
    dns = request.getfixturevalue("dns_server") if "dns_server" in request.fixturenames \
        else None

    def make(conf, wait=True, start=True, **extra):
        base = tmp_path / ("sluiced%d" % len(instances))
        # AF_UNIX paths are limited to 108 bytes: fall back to a short dir.
        if len(str(base / "control.sock")) > 100:
            base = tempfile.mkdtemp(prefix="sluiced-")
            scratch.append(base)
        d = Sluiced(sluiced_bin[0], sluiced_bin[1], conf, base,
                    dns_port=dns.port if dns is not None else 0,
                    resolver=dns is not None, **extra)
        instances.append(d)
        if start:
            d.start(wait=wait)
        return d

    yield make
    problems = []
    for d in instances:
        problems.extend("%r: %s" % (d, p) for p in d.teardown())
    for s in scratch:
        shutil.rmtree(s, ignore_errors=True)
    if problems:
        pytest.fail("sluiced teardown:\n" + "\n".join(problems), pytrace=False)
