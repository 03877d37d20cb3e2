"""Limits and bad input on the SMTP listener (smtp_server.c): every limit of
the listener block, garbage, NUL bytes, over-long lines (a 10 MB one too),
timeouts and the error budget. Assertions are on the replies a client gets
and on what reaches the receiver (nothing, for a refused message).
"""

import os
import re
import time


from conftest import FAST_RETRY
from peers import scaled, wait_until
from test_smtp_inject import MSG, Raw

LIMITS = """\
hostname mta.test
workers 2
log-level debug
listener 127.0.0.1:{port} {
    relay-from 127.0.0.0/8
    max-message-size 2K
    max-recipients 3
    max-line-length 512
    max-headers 10
    max-errors %d
    %s
}
domain * { route [127.0.0.1]:{rx} %s }
"""


def conf(extra="", errors=100):
    return LIMITS % (errors, extra, FAST_RETRY)


def start(sluiced, receiver, extra="", errors=100):
    rx = receiver()
    d = sluiced(conf(extra, errors), rx=rx.port)
    return d, rx


def session(d, source=None):
    c = Raw(d.port, source=source)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    return c


def envelope(c, rcpts=("b@dst.test",)):
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[0] == 250


def deliver_marker(d, rx, n):
    """Send a good message and wait for it: everything sent before it that
    was going to arrive has had the chance to (same session order)."""
    d.send("marker@src.test", "m@dst.test", MSG)
    wait_until(lambda: any(m.mail_from == "marker@src.test" for m in rx.messages), 10,
               what="marker message")
    assert len(rx.messages) == n, rx.messages


def rss_kb(pid):
    """Resident memory of pid; None under ASan, whose quarantine keeps freed
    memory resident (the measure would say nothing about sluiced)."""
    if os.environ.get("ASAN_OPTIONS"):
        return None
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def assert_rss_flat(pid, before, limit_kb=4096):
    if before is None:
        return
    grown = rss_kb(pid) - before
    assert grown < limit_kb, "RSS grew by %d kB" % grown


def test_size_declared_at_mail(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    code, lines = c.cmd("MAIL FROM:<a@src.test> SIZE=2049")
    assert code == 552 and lines[0].startswith("5.3.4")
    assert c.cmd("MAIL FROM:<a@src.test> SIZE=2048")[0] == 250


def test_data_over_size_read_to_the_end(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    body = b"".join(b"line %04d of a message that is too big\r\n" % i for i in range(100))
    c.send(b"Subject: big\r\n\r\n" + body + b".\r\n")
    code, lines = c.reply()
    assert code == 552 and lines[0].startswith("5.3.4"), lines
    # the rest of the data was not taken for commands; the session goes on
    assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    deliver_marker(d, rx, 2)
    assert b"too big" not in b"".join(m.data for m in rx.messages)


def test_bdat_over_size(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    envelope(c)
    chunk = b"x" * 70 + b"\r\n"
    part = b"Subject: b\r\n\r\n" + chunk * 20
    c.send(b"BDAT %d\r\n" % len(part) + part)
    assert c.reply()[0] == 250
    c.send(b"BDAT %d LAST\r\n" % len(part) + part)
    code, lines = c.reply()
    assert code == 552 and lines[0].startswith("5.3.4"), lines
    assert c.cmd("NOOP")[0] == 250
    deliver_marker(d, rx, 1)


def test_max_recipients(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    envelope(c, ["r1@dst.test", "r2@dst.test", "r3@dst.test"])
    code, lines = c.cmd("RCPT TO:<r4@dst.test>")
    assert code == 452 and lines[0].startswith("4.5.3"), lines
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    wait_until(lambda: len(rx.recipients) >= 3, 10, what="3 recipients")
    time.sleep(0.2)
    assert sorted(rx.recipients) == ["r1@dst.test", "r2@dst.test", "r3@dst.test"]


def test_command_line_too_long(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    # 512 bytes with CRLF is the limit
    assert c.cmd("NOOP " + "x" * (512 - 7))[0] == 250
    code, lines = c.cmd("NOOP " + "x" * (512 - 6))
    assert code == 500 and lines[0].startswith("5.5.2"), lines
    assert c.cmd("NOOP")[0] == 250


def test_data_line_too_long(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: long\r\n\r\n" + b"y" * 600 + b"\r\nshort\r\n.\r\n")
    code, lines = c.reply()
    assert code == 552 and lines[0].startswith("5.5.2"), lines
    assert c.cmd("RSET")[0] == 250
    deliver_marker(d, rx, 1)


def test_too_many_headers(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(10))
    c.send(hdrs + b"\r\nten headers are fine\r\n.\r\n")
    assert c.reply()[0] == 250
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    # folded lines are part of their field, not new headers
    c.send(hdrs + b" folded\r\n\tfolded\r\nX-H11: v\r\n\r\nbody\r\n.\r\n")
    code, lines = c.reply()
    assert code == 552 and lines[0].startswith("5.6.0"), lines
    deliver_marker(d, rx, 2)
    assert any(b"ten headers are fine" in m.data for m in rx.messages)


def test_garbage_and_nul(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = session(d)
    code, lines = c.cmd("XYZZY plugh")
    assert code == 500 and lines[0].startswith("5.5.1")
    c.send(b"NOOP\x00hidden\r\n")
    code, lines = c.reply()
    assert code == 500 and lines[0].startswith("5.5.2"), lines
    c.send(b"MAIL FROM:<a@src.test>\x00\r\n")
    assert c.reply()[0] == 500
    c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n")   # a TLS hello in the clear
    assert c.reply()[0] == 500
    c.send(b"\xff\xfe\xfd\r\n")
    assert c.reply()[0] == 500
    c.send(b"\r\n")
    assert c.reply()[0] == 500
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250


def test_max_errors(sluiced, receiver):
    d, rx = start(sluiced, receiver, errors=3)
    c = session(d)
    c.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    replies = c.replies(4)
    assert [r[0] for r in replies] == [500, 500, 500, 421], replies
    assert replies[3][1][0].startswith("4.7.0")
    assert c.closed()           # and NOOP was never answered


def test_ten_megabyte_line(sluiced, receiver):
    """A 10 MB line is discarded as it arrives: one 500 5.5.2, memory stays
    flat, the session goes on."""
    d, rx = start(sluiced, receiver)
    c = session(d)
    before = rss_kb(d.pid)
    block = b"A" * (1 << 20)
    for _ in range(10):
        c.send(block)
    c.send(b"\r\nNOOP\r\n")
    code, lines = c.reply()
    assert code == 500 and lines[0].startswith("5.5.2"), lines
    assert c.reply() == (250, ["2.0.0 Ok"])
    assert_rss_flat(d.pid, before)
    # in DATA too: the message is refused, the session survives
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: huge\r\n\r\n")
    for _ in range(10):
        c.send(block)
    c.send(b"\r\n.\r\n")
    code, lines = c.reply()
    assert code == 552, lines
    assert c.cmd("NOOP")[0] == 250
    assert_rss_flat(d.pid, before)
    deliver_marker(d, rx, 1)


def quiet(d):
    """Wait until the fixture's readiness probe (one connection) has come
    and gone, so that it does not count against the limits."""
    def idle():
        log = d.log_text()
        n = log.count("event=connect ")
        return n >= 1 and n == log.count("event=disconnect ")
    wait_until(idle, 5, what="idle listener")


def test_connection_limits(sluiced, receiver):
    d, rx = start(sluiced, receiver, "max-connections-per-ip 2\n    max-connections 3")
    quiet(d)
    a1 = session(d, ("127.0.0.1", 0))
    a2 = session(d, ("127.0.0.1", 0))
    a3 = Raw(d.port, source=("127.0.0.1", 0))
    code, lines = a3.reply()
    assert code == 421 and lines[0].startswith("4.7.0"), lines
    assert a3.closed()
    b1 = session(d, ("127.0.0.2", 0))
    c1 = Raw(d.port, source=("127.0.0.3", 0))
    code, lines = c1.reply()
    assert code == 421 and lines[0].startswith("4.3.2"), lines
    assert c1.closed()
    # a slot freed is a slot usable again
    gone = d.log_text().count("event=disconnect ")
    assert a1.cmd("QUIT")[0] == 221
    assert a1.closed()
    wait_until(lambda: d.log_text().count("event=disconnect ") > gone, 5, what="disconnect")
    a4 = session(d, ("127.0.0.1", 0))
    assert a4.cmd("NOOP")[0] == 250
    for c in (a2, b1, a4):
        assert c.cmd("QUIT")[0] == 221


def test_command_timeout(sluiced, receiver):
    d, rx = start(sluiced, receiver, "command-timeout 1s")
    c = session(d)
    c.sock.settimeout(scaled(10))
    code, lines = c.reply()            # nothing sent: the server speaks first
    assert code == 421 and lines[0].startswith("4.4.2"), lines
    assert c.closed()


def test_data_timeout(sluiced, receiver):
    d, rx = start(sluiced, receiver, "data-timeout 1s")
    c = session(d)
    envelope(c)
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: slow\r\n\r\npart of a body")
    c.sock.settimeout(scaled(10))
    code, lines = c.reply()
    assert code == 421 and lines[0].startswith("4.4.2"), lines
    assert c.closed()
    # the command timeout (5m default) is not the data timeout
    c2 = session(d)
    time.sleep(1.5)
    assert c2.cmd("NOOP")[0] == 250
    deliver_marker(d, rx, 1)
