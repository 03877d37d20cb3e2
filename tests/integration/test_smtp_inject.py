"""SMTP injection (smtp_server.c): extensions, the command set, pipelining,
CHUNKING, DATA edge cases and what the next hop receives.

Every test runs a real sluiced whose listener relays for 127.0.0.0/8 and
routes all mail to a receiver on loopback; assertions are on the replies a
real client gets and on the messages the receiver records.
"""

import re
import signal
import socket

import pytest

from conftest import FAST_RETRY
from peers import scaled, wait_until

CONF = """\
hostname mta.test
workers 2
log-level debug
listener 127.0.0.1:{port} {
    relay-from 127.0.0.0/8
    max-message-size 1M
}
domain * { route [127.0.0.1]:{rx} %s }
""" % FAST_RETRY

MSG = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hi\r\n\r\nhello\r\n"


def body_of(m):
    """The received message's body (after the first blank line)."""
    return m.data.split(b"\r\n\r\n", 1)[1]


class Raw:
    """A raw SMTP client socket: write bytes, read whole replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        self.sock = socket.create_connection((host, port), timeout=scaled(timeout),
                                             source_address=source)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """One reply: (code, [text lines]); (None, []) when the peer closed."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return (None, lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line[4:])
            if len(line) < 4 or line[3] == " ":
                return (int(line[:3]), lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes the connection (EOF) within timeout."""
        self.sock.settimeout(scaled(timeout))
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def start(sluiced, receiver, conf=CONF):
    rx = receiver()
    d = sluiced(conf, rx=rx.port)
    return d, rx


def greeted(d, ehlo=True):
    c = Raw(d.port)
    code, lines = c.reply()
    assert code == 220 and lines[0].startswith("mta.test ")
    if ehlo:
        code, _ = c.cmd("EHLO client.test")
        assert code == 250
    return c


def test_ehlo_advertises_every_extension(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    s = d.smtp()
    code, text = s.ehlo("client.test")
    assert code == 250
    lines = text.decode().split("\n")
    assert lines[0] == "mta.test Hello client.test [127.0.0.1]"
    ext = set(lines[1:])
    assert ext == {"PIPELINING", "SIZE 1048576", "8BITMIME", "SMTPUTF8",
                   "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"}
    # no certificate: no STARTTLS; no TLS: no AUTH
    assert not s.has_extn("starttls") and not s.has_extn("auth")
    s.quit()


def test_send_and_receive_with_headers(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    msg = (b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hi\r\n"
           b"X-Sluice-Campaign: spring\r\nX-Sluice-Priority: bulk\r\nX-Sluice-Tag: t1\r\n\r\n"
           b"hello\r\n.leading dot\r\n..two dots\r\n")
    qid = d.send("a@src.test", "b@dst.test", msg)
    got = rx.wait_for(1)[0]
    assert got.mail_from == "a@src.test"
    assert got.rcpt_tos == ["b@dst.test"]
    # content intact, dot-stuffing undone exactly once
    assert body_of(got) == b"hello\r\n.leading dot\r\n..two dots\r\n"
    m = got.msg
    # control headers never leave sluice
    assert not [k for k in m.keys() if k.lower().startswith("x-sluice-")]
    # Message-ID and Date added when missing
    assert m["Message-ID"] and re.match(r"<[^@>]+@[^>]+>", str(m["Message-ID"]).strip())
    assert m["Date"]
    received = [str(v) for v in m.get_all("Received")]
    ours = [r for r in received if "by mta.test (sluice)" in r]
    assert ours, received
    r = " ".join(ours[0].split())
    assert "from client.test ([127.0.0.1])" in r
    assert "with ESMTP id %s" % qid in r
    assert "for <b@dst.test>" in r
    # the log ties the session together
    log = d.log_text()
    sid = re.search(r"event=mail sid=(\S+) from=<a@src\.test>", log).group(1)
    assert re.search(r"event=connect sid=%s ip=127\.0\.0\.1" % sid, log)
    assert re.search(r"event=queued sid=%s id=%s size=\d+ nrcpt=1" % (sid, qid), log)
    wait_until(lambda: re.search(r"event=disconnect sid=%s" % sid, d.log_text()), 5,
               what="disconnect line")


def test_helo_and_plain_smtp(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d, ehlo=False)
    code, lines = c.cmd("HELO old.client")
    assert (code, lines) == (250, ["mta.test"])
    # ESMTP parameters need EHLO
    assert c.cmd("MAIL FROM:<a@src.test> SIZE=10")[0] == 555
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("QUIT")[0] == 221
    got = rx.wait_for(1)[0]
    rcv = " ".join(str(got.msg["Received"]).split())
    assert "from old.client ([127.0.0.1])" in rcv and "with SMTP id" in rcv


def test_other_commands(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])
    code, lines = c.cmd("VRFY someone@dst.test")
    assert code == 252 and lines[0].startswith("2.5.2 ")
    assert c.cmd("EXPN list")[0] == 502
    code, lines = c.cmd("HELP")
    assert code == 214 and lines[0].startswith("2.0.0 ") and "BDAT" in lines[0]
    assert c.cmd("RSET") == (250, ["2.0.0 Ok"])
    code, lines = c.cmd("STARTTLS")
    assert code == 502 and lines[0].startswith("5.5.1")
    code, lines = c.cmd("AUTH PLAIN AGEAYg==")
    assert code == 502
    code, lines = c.cmd("QUIT")
    assert code == 221 and lines[0].startswith("2.0.0")
    assert c.closed()


def test_enhanced_codes_on_every_reply(sluiced, receiver):
    """Every 2xx/4xx/5xx reply after EHLO carries an enhanced status code."""
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    cmds = ["NOOP", "MAIL FROM:<a@src.test>", "RCPT TO:<b@dst.test>", "RSET",
            "RCPT TO:<b@dst.test>", "DATA", "FOO", "MAIL FROM:<bad", "VRFY x",
            "MAIL FROM:<a@src.test> XYZ=1", "HELP", "BDAT x"]
    for line in cmds:
        code, lines = c.cmd(line)
        assert code is not None
        assert re.match(r"[245]\.\d{1,3}\.\d{1,3} ", lines[-1]), (line, code, lines)
        assert str(code)[0] == lines[-1][0], (line, code, lines)


def test_sequence_errors(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d, ehlo=False)
    assert c.cmd("MAIL FROM:<a@src.test>") == (503, ["5.5.1 Error: send HELO/EHLO first"])
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 503
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 503
    code, lines = c.cmd("DATA")
    assert code == 554 and lines[0].startswith("5.5.1")
    assert c.cmd("RCPT TO:<>")[0] == 501
    assert c.cmd("RCPT TO:<no-domain>")[0] == 501
    code, lines = c.cmd("RCPT TO:<postmaster>")
    assert code == 550
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("DATA")[0] == 503
    c.cmd("QUIT")


def test_pipelined_transactions_one_write(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    batch = b""
    for i in range(3):
        batch += (b"MAIL FROM:<s%d@src.test>\r\nRCPT TO:<r%d@dst.test>\r\n"
                  b"RCPT TO:<bad address>\r\nDATA\r\n" % (i, i))
        batch += b"Subject: pipelined %d\r\n\r\nbody %d\r\n.\r\n" % (i, i)
    batch += b"NOOP\r\nQUIT\r\n"
    c.send(batch)
    replies = c.replies(3 * 5 + 2)
    codes = [r[0] for r in replies]
    assert codes == [250, 250, 501, 354, 250] * 3 + [250, 221], replies
    qids = [r[1][0].split()[-1] for r in replies[4:15:5]]
    assert len(set(qids)) == 3 and all("queued as" in r[1][0] for r in replies[4:15:5])
    got = sorted(rx.wait_for(3), key=lambda m: m.mail_from)
    assert [m.mail_from for m in got] == ["s0@src.test", "s1@src.test", "s2@src.test"]
    for i, m in enumerate(got):
        assert m.rcpt_tos == ["r%d@dst.test" % i]
        assert body_of(m) == b"body %d\r\n" % i


def test_bdat_chunks(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    # chunks split mid-line and between CR and LF; a line starting with a
    # dot must arrive intact (BDAT data is not dot-stuffed)
    parts = [b"Subject: chunked\r\n\r\nfirst li", b"ne\r", b"\n.dot line\r\nlast line",
             b"\r\n"]
    for p in parts[:-1]:
        c.send(b"BDAT %d\r\n" % len(p) + p)
        code, lines = c.reply()
        assert code == 250 and lines[0].startswith("2.0.0"), lines
    c.send(b"BDAT %d LAST\r\n" % len(parts[-1]) + parts[-1])
    code, lines = c.reply()
    assert code == 250 and "queued as" in lines[0]
    got = rx.wait_for(1)[0]
    assert got.header("Subject") == "chunked"
    assert body_of(got) == b"first line\r\n.dot line\r\nlast line\r\n"


def test_bdat_pipelined_and_zero_last(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    body = b"Subject: z\r\n\r\nno final newline"
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\nBDAT %d\r\n" % len(body)
           + body + b"BDAT 0 LAST\r\nQUIT\r\n")
    codes = [r[0] for r in c.replies(5)]
    assert codes == [250, 250, 250, 250, 221]
    got = rx.wait_for(1)[0]
    # the message is completed with a final CRLF
    assert body_of(got) == b"no final newline\r\n"


def test_bdat_refused_chunk_is_consumed(sluiced, receiver):
    """A BDAT that cannot be accepted still has its octets read (RFC 3030):
    the data must not be taken for commands."""
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    payload = b"QUIT\r\nRSET\r\n"
    c.send(b"BDAT %d\r\n" % len(payload) + payload + b"NOOP\r\n")
    code, lines = c.reply()
    assert code == 503 and lines[0].startswith("5.5.1")
    assert c.reply() == (250, ["2.0.0 Ok"])       # NOOP, not QUIT
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    c.send(b"BDAT 4 LAST\r\nabcd")
    code, lines = c.reply()
    assert code == 554                             # no valid recipients
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    code, _ = c.cmd("DATA")
    assert code == 354
    c.send(b"Subject: after\r\n\r\nok\r\n.\r\n")
    assert c.reply()[0] == 250
    # DATA after BDAT in the same transaction is refused
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    c.send(b"BDAT 3\r\nabc")
    assert c.reply()[0] == 250
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("RSET")[0] == 250
    assert len(rx.wait_for(1)) == 1


def test_bare_lf_normalised_and_not_a_terminator(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    # bare LF line ends; "\n.\n" and "\n.\r\n" are content, not the end
    c.send(b"Subject: lf\n\nline one\nline two\r\n.\nstill data\n.\r\nmore\r\n.\r\n")
    code, lines = c.reply()
    assert code == 250, lines
    got = rx.wait_for(1)[0]
    assert b"\n" not in got.data.replace(b"\r\n", b"")
    assert got.header("Subject") == "lf"
    assert body_of(got) == b"line one\r\nline two\r\n.\r\nstill data\r\n.\r\nmore\r\n"


def test_8bit_and_smtputf8(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    # UTF-8 address without SMTPUTF8: refused
    code, lines = c.cmd("MAIL FROM:<j\u00f6rg@src.test>")
    assert code == 553 and lines[0].startswith("5.6.7")
    assert c.cmd("MAIL FROM:<j\u00f6rg@src.test> SMTPUTF8 BODY=8BITMIME")[0] == 250
    assert c.cmd("RCPT TO:<\u00fcser@dst.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: gr\u00fc\u00dfe\r\n\r\nk\u00e4se\r\n.\r\n".encode())
    assert c.reply()[0] == 250
    # 8-bit body without BODY=8BITMIME is accepted and marked 8-bit
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@dst.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: x\r\n\r\n\u00e9t\u00e9\r\n.\r\n".encode())
    assert c.reply()[0] == 250
    got = rx.wait_for(2)
    utf = [m for m in got if m.mail_from.startswith("j")][0]
    assert utf.rcpt_tos == ["\u00fcser@dst.test"]
    assert "k\u00e4se".encode() in utf.data
    plain = [m for m in got if m.mail_from == "a@src.test"][0]
    assert "\u00e9t\u00e9".encode() in plain.data
    # BINARYMIME is not offered
    code, _ = c.cmd("MAIL FROM:<a@src.test> BODY=BINARYMIME")
    assert code == 555


def test_dsn_parameters_accepted(sluiced, receiver):
    d, rx = start(sluiced, receiver)
    s = d.smtp()
    s.ehlo("client.test")
    assert s.has_extn("dsn")
    code, _ = s.mail("a@src.test", ["RET=HDRS", "ENVID=abc+2Bdef"])
    assert code == 250
    code, _ = s.rcpt("b@dst.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b+2Bx@dst.test"])
    assert code == 250
    code, _ = s.rcpt("c@dst.test", ["NOTIFY=NEVER"])
    assert code == 250
    code, _ = s.rcpt("d@dst.test", ["NOTIFY=NEVER,DELAY"])
    assert code == 501
    code, _ = s.rcpt("e@dst.test", ["NOTIFY=SUCCESS", "XYZ=1"])
    assert code == 555
    code, _ = s.data(MSG)
    assert code == 250
    s.quit()
    wait_until(lambda: len(rx.recipients) >= 2, 10, what="both recipients delivered")
    assert sorted(rx.recipients) == ["b@dst.test", "c@dst.test"]


def test_client_gone_while_spooling(sluiced, receiver):
    """The client drops the connection right after the final dot: the
    message was accepted for spooling and is delivered all the same."""
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    c.send(b"MAIL FROM:<gone@src.test>\r\nRCPT TO:<b@dst.test>\r\nDATA\r\n")
    assert [r[0] for r in c.replies(3)] == [250, 250, 354]
    c.send(MSG + b".\r\n")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    got = rx.wait_for(1)[0]
    assert got.mail_from == "gone@src.test"
    # and the daemon is still fine
    assert d.send("a@src.test", "b@dst.test", MSG)
    rx.wait_for(2)


@pytest.mark.parametrize("tail,sender", [(b".\r\nQUIT\r\n", "half@src.test"),
                                         (b".\r\n", "half2@src.test")],
                         ids=["pipelined-quit", "after-the-dot"])
def test_half_close(sluiced, receiver, tail, sender):
    """The client ends the data (and pipelines QUIT, or not), then shuts
    down its sending side while the message is being spooled: the message
    is still acknowledged to a client that keeps reading (then the 221 when
    it sent QUIT), and the session then closes."""
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<b@dst.test>\r\nDATA\r\n" % sender.encode())
    assert [r[0] for r in c.replies(3)] == [250, 250, 354]
    c.send(MSG + tail)
    c.sock.shutdown(socket.SHUT_WR)
    code, lines = c.reply()
    assert code == 250 and "queued as" in lines[0], lines
    if b"QUIT" in tail:
        assert c.reply() == (221, ["2.0.0 Bye"])
    assert c.closed()
    assert rx.wait_for(1)[0].mail_from == sender


def test_client_that_does_not_read_its_replies(sluiced, receiver):
    """Replies are written straight to the socket; when the client does not
    read them the rest waits for the socket, the session stops taking
    commands above its output limit and goes on once the client reads, and
    every reply arrives, in order."""
    import threading
    import time
    d, rx = start(sluiced, receiver)
    c = greeted(d)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    n = 400000                     # 5.6 MB of replies: more than the socket buffers hold
    batch = (b"NOOP\r\n" * n + b"MAIL FROM:<slow@src.test>\r\nRCPT TO:<b@dst.test>\r\n"
             b"DATA\r\n" + MSG + b".\r\nQUIT\r\n")
    sender = threading.Thread(target=c.send, args=(batch,))
    sender.start()
    time.sleep(scaled(1))          # the server fills its buffers meanwhile
    noop = b"250 2.0.0 Ok\r\n"
    got = b""
    while len(got) < n * len(noop):
        chunk = c.sock.recv(1 << 20)
        assert chunk, "connection closed after %d bytes" % len(got)
        got += chunk
    sender.join(scaled(30))
    assert got[:n * len(noop)] == noop * n
    c.buf = got[n * len(noop):]
    assert [r[0] for r in c.replies(5)] == [250, 250, 354, 250, 221]
    assert c.closed()
    assert rx.wait_for(1)[0].mail_from == "slow@src.test"


def test_swaks_pipelining_and_chunking(sluiced, receiver):
    import shutil
    import subprocess
    if not shutil.which("swaks"):
        pytest.skip("swaks not installed")
    d, rx = start(sluiced, receiver)
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.port),
                        "--from", "sw@src.test", "--to", "b@dst.test", "--pipeline",
                        "--helo", "swaks.test", "--header", "Subject: swaks"],
                       capture_output=True, text=True, timeout=scaled(30))
    assert p.returncode == 0, p.stdout + p.stderr
    got = rx.wait_for(1)[0]
    assert got.mail_from == "sw@src.test" and got.header("Subject") == "swaks"


def test_graceful_stop(sluiced, receiver):
    """SIGTERM: an idle session gets 421 4.3.2 at once; a session in a
    transaction finishes it, then gets 421 at its next command."""
    d, rx = start(sluiced, receiver)
    idle = greeted(d)
    busy = greeted(d)
    busy.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\n")
    assert [r[0] for r in busy.replies(2)] == [250, 250]
    d.signal(signal.SIGTERM)
    code, lines = idle.reply()
    assert code == 421 and lines[0].startswith("4.3.2"), lines
    assert idle.closed()
    assert busy.cmd("DATA")[0] == 354
    busy.send(MSG + b".\r\n")
    code, lines = busy.reply()
    assert code == 250, lines
    code, lines = busy.cmd("MAIL FROM:<a@src.test>")
    assert code == 421 and lines[0].startswith("4.3.2")
    assert busy.closed()
    d.proc.wait(scaled(15))
    assert d.proc.returncode == 0


def test_trace_shows_every_state_transition(sluiced, receiver):
    rx = receiver()
    d = sluiced(CONF.replace("log-level debug", "log-level trace"), rx=rx.port)
    c = greeted(d)
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\nDATA\r\n")
    assert [r[0] for r in c.replies(3)] == [250, 250, 354]
    c.send(MSG + b".\r\nQUIT\r\n")
    assert [r[0] for r in c.replies(2)] == [250, 221]
    assert c.closed()
    log = d.log_text()
    sid = re.search(r"event=mail sid=(\S+)", log).group(1)
    wait_until(lambda: "event=disconnect sid=" + sid in d.log_text(), 5, what="disconnect")
    steps = re.findall(r"event=state sid=%s from=(\S+) to=(\S+)" % sid, d.log_text())
    assert steps == [("HELO", "READY"), ("READY", "MAIL"), ("MAIL", "RCPT"), ("RCPT", "DATA"),
                     ("DATA", "INJECT"), ("INJECT", "READY"), ("READY", "CLOSING")], steps
