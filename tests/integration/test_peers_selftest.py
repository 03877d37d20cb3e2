"""Tests of the test peers themselves (conftest.py, peers/): the DNS
server, the SMTP receiver, the CA, the DKIM helpers and the sluiced runner
(against a stand-in daemon, and against the real one when it is built)."""

import base64
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import dkim
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from conftest import BASE_CONF, mx_conf, route_conf
from peers import (DNSServer, Receiver, Sluiced, SluicedError, TestCA, dkim_verify,
                   free_port, make_dkim_key, render)

MSG = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: selftest\r\n\r\nhello\r\n"


def ask(dns, name, rtype, tcp=False, timeout=2):
    q = DNSRecord.question(name, rtype)
    return DNSRecord.parse(q.send("127.0.0.1", dns.port, tcp=tcp, timeout=timeout))


# ---- DNS ----------------------------------------------------------------------------
def test_dns_records(dns_server):
    dns_server.add("example.test", "MX", (10, "mx1.example.test"))
    dns_server.add("example.test", "MX", (20, "mx2.example.test."), ttl=300)
    dns_server.add("mx1.example.test", "A", "127.0.0.2")
    dns_server.add("mx1.example.test", "AAAA", "::1")
    dns_server.add("alias.example.test", "CNAME", "mx1.example.test")
    r = ask(dns_server, "example.test", "MX")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa
    assert sorted((x.rdata.preference, str(x.rdata.label)) for x in r.rr) == [
        (10, "mx1.example.test."), (20, "mx2.example.test.")]
    assert sorted(x.ttl for x in r.rr) == [60, 300]
    assert [str(x.rdata) for x in ask(dns_server, "MX1.Example.TEST.", "A").rr] == ["127.0.0.2"]
    assert [str(x.rdata) for x in ask(dns_server, "mx1.example.test", "AAAA").rr] == ["::1"]
    r = ask(dns_server, "alias.example.test", "A")
    assert [QTYPE.get(x.rtype) for x in r.rr] == ["CNAME", "A"]
    assert str(r.rr[1].rdata) == "127.0.0.2"
    assert ("example.test", "MX") in dns_server.queries
    assert ("mx1.example.test", "AAAA") in dns_server.queries
    assert dns_server.queried("mx1.example.test", "A") == 1


def test_dns_nxdomain_nodata(dns_server):
    dns_server.add("mx.example.test", "A", "127.0.0.1")
    r = ask(dns_server, "nothing.test", "MX")
    assert r.header.rcode == RCODE.NXDOMAIN and not r.rr
    r = ask(dns_server, "mx.example.test", "MX")              # exists, other type
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    assert [QTYPE.get(x.rtype) for x in r.auth] == ["SOA"]
    r = ask(dns_server, "example.test", "A")                  # empty non-terminal
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    dns_server.add("dangling.test", "CNAME", "gone.test")
    r = ask(dns_server, "dangling.test", "A")
    assert r.header.rcode == RCODE.NXDOMAIN and QTYPE.get(r.rr[0].rtype) == "CNAME"
    dns_server.remove("mx.example.test")
    assert ask(dns_server, "mx.example.test", "A").header.rcode == RCODE.NXDOMAIN


def test_dns_null_mx(dns_server):
    dns_server.add("nullmx.test", "MX", (0, "."))
    r = ask(dns_server, "nullmx.test", "MX")
    assert len(r.rr) == 1
    assert r.rr[0].rdata.preference == 0 and str(r.rr[0].rdata.label) == "."


def test_dns_long_txt_split_and_truncation(dns_server):
    value = "v=DKIM1; k=rsa; p=" + "A" * 700
    dns_server.add("s1._domainkey.example.test", "TXT", value)
    r = ask(dns_server, "s1._domainkey.example.test", "TXT")  # UDP, no EDNS: > 512
    assert r.header.tc == 1 and not r.rr
    r = ask(dns_server, "s1._domainkey.example.test", "TXT", tcp=True)
    assert r.header.tc == 0
    strings = r.rr[0].rdata.data
    assert [len(s) for s in strings] == [255, 255, len(value) - 510]
    assert b"".join(strings).decode() == value
    assert dns_server.txt("S1._domainkey.example.test.") == value.encode()
    q = DNSRecord.question("s1._domainkey.example.test", "TXT")
    q.add_ar(__import__("dnslib").EDNS0(udp_len=4096))      # EDNS: fits in UDP
    r = DNSRecord.parse(q.send("127.0.0.1", dns_server.port, timeout=2))
    assert r.header.tc == 0 and b"".join(r.rr[0].rdata.data).decode() == value


def test_dns_behaviours(dns_server):
    dns_server.add("broken.test", "MX", (10, "mx.broken.test"))
    dns_server.set_behaviour("broken.test", "servfail")
    assert ask(dns_server, "broken.test", "MX").header.rcode == RCODE.SERVFAIL
    dns_server.set_behaviour("broken.test", "nxdomain")
    assert ask(dns_server, "broken.test", "MX").header.rcode == RCODE.NXDOMAIN
    dns_server.set_behaviour("broken.test", "refused")
    assert ask(dns_server, "broken.test", "MX").header.rcode == RCODE.REFUSED
    dns_server.set_behaviour("broken.test", None)
    assert ask(dns_server, "broken.test", "MX").rr
    dns_server.set_behaviour("slow.test", ("delay", 0.4))
    dns_server.add("slow.test", "A", "127.0.0.1")
    t = time.monotonic()
    assert ask(dns_server, "slow.test", "A").rr
    assert time.monotonic() - t >= 0.35
    t = time.monotonic()
    assert ask(dns_server, "slow.test", "A", tcp=True).rr
    assert time.monotonic() - t >= 0.35
    dns_server.set_behaviour("dead.test", "timeout")
    for tcp in (False, True):
        with pytest.raises((socket.timeout, TimeoutError)):
            ask(dns_server, "dead.test", "A", tcp=tcp, timeout=0.5)
    assert dns_server.queried("dead.test") == 2
    with pytest.raises(ValueError):
        dns_server.set_behaviour("x.test", "explode")
    with pytest.raises(ValueError):
        dns_server.add("x.test", "A", "not-an-ip")


def test_dns_stop_releases_everything():
    before = threading.active_count()
    srv = DNSServer()
    srv.set_behaviour("dead.test", "timeout")
    srv.set_behaviour("slow.test", ("delay", 30))
    # leave a TCP connection hanging on an unanswered query, and a delayed one
    c = socket.create_connection(("127.0.0.1", srv.port))
    wire = DNSRecord.question("dead.test", "A").pack()
    c.sendall(len(wire).to_bytes(2, "big") + wire)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(DNSRecord.question("slow.test", "A").pack(), ("127.0.0.1", srv.port))
    time.sleep(0.2)
    t = time.monotonic()
    srv.stop()
    assert time.monotonic() - t < 2
    c.close()
    u.close()
    assert threading.active_count() == before
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # port free again
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", srv.port))
    srv.stop()                                            # idempotent


# ---- SMTP receiver -------------------------------------------------------------------
class Raw:
    """A hand-driven SMTP client (for pipelining and dot-stuffing)."""

    def __init__(self, port, host="127.0.0.1", source=None):
        self.s = socket.create_connection((host, port), timeout=5,
                                          source_address=(source, 0) if source else None)
        self.f = self.s.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("closed")
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return lines

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        self.f.close()
        self.s.close()


def test_receiver_records_message(receiver):
    rx = receiver()
    with smtplib.SMTP("127.0.0.1", rx.port, local_hostname="client.test") as s:
        code, ehlo = s.ehlo()
        assert code == 250 and b"PIPELINING" in ehlo and b"SMTPUTF8" in ehlo
        assert s.sendmail("a@src.test", ["b@dst.test", "c@dst.test"], MSG,
                          mail_options=["BODY=8BITMIME"], rcpt_options=["NOTIFY=NEVER"]) == {}
    m = rx.wait_for(1)[0]
    assert m.mail_from == "a@src.test"
    assert m.rcpt_tos == ["b@dst.test", "c@dst.test"]
    assert "BODY=8BITMIME" in m.mail_options
    assert m.rcpt_options == [["NOTIFY=NEVER"], ["NOTIFY=NEVER"]]
    assert m.data == MSG
    assert m.ehlo_name == "client.test"
    assert m.tls is False
    assert m.peer[0] == "127.0.0.1"
    assert m.header("Subject") == "selftest"
    assert rx.recipients == ["b@dst.test", "c@dst.test"]
    rx.wait_idle()
    assert len(rx.connections) == 1 and rx.connections[0].closed


def test_receiver_unstuffs_dots_and_keeps_bytes(receiver):
    rx = receiver()
    c = Raw(rx.port)
    c.reply()
    c.send(b"EHLO raw.test\r\n")
    c.reply()
    c.send(b"MAIL FROM:<>\r\n")
    assert c.reply() == ["250 2.1.0 Ok"]
    c.send(b"RCPT TO:<b@dst.test>\r\n")
    c.reply()
    c.send(b"DATA\r\n")
    assert c.reply()[0].startswith("354")
    c.send(b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n")
    c.send(b"\xc3\xa9 8bit\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.send(b"QUIT\r\n")
    c.reply()
    c.close()
    m = rx.wait_for(1)[0]
    assert m.mail_from == ""
    assert m.data == b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n\xc3\xa9 8bit\r\n"


def test_receiver_sees_pipelining(receiver):
    rx = receiver()
    c = Raw(rx.port)
    c.reply()
    c.send(b"EHLO raw.test\r\n")
    assert "250-PIPELINING" in c.reply()
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\nRCPT TO:<c@dst.test>\r\nDATA\r\n")
    replies = [c.reply()[0][:3] for _ in range(4)]
    assert replies == ["250", "250", "250", "354"]
    c.send(b"hi\r\n.\r\n")
    c.reply()
    c.send(b"QUIT\r\n")
    c.reply()
    c.close()
    rx.wait_for(1)
    conn = rx.connections[0]
    assert conn.pipelined("MAIL", "RCPT", "DATA")
    assert ["MAIL FROM:<a@src.test>", "RCPT TO:<b@dst.test>", "RCPT TO:<c@dst.test>",
            "DATA"] in conn.packets
    # smtplib waits for every reply: nothing arrives together
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
    rx.wait_for(2)
    assert not rx.connections[1].pipelined("MAIL", "RCPT")
    assert all(len(p) == 1 for p in rx.connections[1].packets)


def test_receiver_no_pipelining_no_smtputf8(receiver):
    rx = receiver(pipelining=False, smtputf8=False)
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        code, ehlo = s.ehlo()
    assert b"PIPELINING" not in ehlo and b"SMTPUTF8" not in ehlo and b"8BITMIME" in ehlo


def test_receiver_replies(receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 no such user" if a.startswith("bad") else None,
                  data_reply="451 4.3.0 try later")
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.ehlo()
        s.mail("a@src.test")
        assert s.rcpt("bad@dst.test") == (550, b"5.1.1 no such user")
        assert s.rcpt("good@dst.test")[0] == 250
        assert s.data(MSG) == (451, b"4.3.0 try later")
        rx.set(data_reply=None, mail_reply="452 4.3.1 full")
        assert s.mail("a@src.test")[0] == 452
        s.rset()
        rx.set(mail_reply=None, rcpt_reply="550 5.7.1 all refused")
        s.mail("a@src.test")
        assert s.rcpt("x@dst.test")[0] == 550
        assert s.docmd("DATA")[0] == 554                 # no valid recipients
    assert rx.messages == []
    assert [t.reply for t in rx.transactions] == ["451 4.3.0 try later"]
    assert rx.transactions[0].rcpt_tos == ["good@dst.test"]
    assert rx.connections[0].rejected_rcpts[0] == ("bad@dst.test", "550 5.1.1 no such user")
    rx.set(rcpt_reply=None, data_reply=lambda m: "554 5.7.1 spam" if b"spam" in m.data else None)
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
        with pytest.raises(smtplib.SMTPDataError):
            s.sendmail("a@src.test", ["b@dst.test"], MSG + b"spam\r\n")
    assert len(rx.wait_for(1)) == 1 and len(rx.transactions) == 3
    with pytest.raises(TypeError):
        rx.set(no_such_behaviour=1)


def test_receiver_multiline_reply(receiver):
    rx = receiver(rcpt_reply="550-5.1.1 first line\n550 5.1.1 second line")
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.ehlo()
        s.mail("a@src.test")
        assert s.rcpt("b@dst.test") == (550, b"5.1.1 first line\n5.1.1 second line")


def test_receiver_greeting_421(receiver):
    rx = receiver(greeting="421 4.7.0 go away")
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", rx.port)
    assert e.value.smtp_code == 421
    rx.wait_connections(1)
    rx.wait_idle()
    rx.set(greeting=None, close_after_greeting=True)
    c = Raw(rx.port)
    assert c.reply()[0].startswith("220 ")
    assert c.f.readline() == b""                           # closed by the server
    c.close()
    rx.set(close_after_greeting=False, greeting="220 custom.test hello")
    c = Raw(rx.port)
    assert c.reply() == ["220 custom.test hello"]
    c.close()


def test_receiver_helo_only(receiver):
    rx = receiver(ehlo=False)
    with smtplib.SMTP("127.0.0.1", rx.port, local_hostname="old.test") as s:
        assert s.ehlo()[0] == 502
        assert s.helo()[0] == 250
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert rx.wait_for(1)[0].ehlo_name == "old.test"


def test_receiver_drop_in_data(receiver):
    rx = receiver(drop_in_data=True)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        with smtplib.SMTP("127.0.0.1", rx.port) as s:
            s.sendmail("a@src.test", ["b@dst.test"], MSG * 100)
    rx.wait_idle()
    assert rx.messages == [] and rx.transactions == []
    assert rx.connections[0].dropped_in_data
    # an int: drop only after that many bytes; a smaller message gets through
    rx.set(drop_in_data=100000)
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
    rx.wait_for(1)


def test_receiver_stall_and_prompt_stop(receiver):
    rx = receiver(stall=30)                                  # RCPT and DOT
    s = smtplib.SMTP("127.0.0.1", rx.port, timeout=0.5)
    s.ehlo()
    assert s.mail("a@src.test")[0] == 250
    with pytest.raises((smtplib.SMTPServerDisconnected, socket.timeout)):
        s.rcpt("b@dst.test")
    s.close()
    rx2 = receiver(stall=30, stall_on="DOT")
    s = smtplib.SMTP("127.0.0.1", rx2.port, timeout=0.5)
    s.ehlo()
    s.mail("a@src.test")
    assert s.rcpt("b@dst.test")[0] == 250
    with pytest.raises((smtplib.SMTPServerDisconnected, socket.timeout)):
        s.data(MSG)
    s.close()
    rx3 = receiver(stall=30, stall_on=["GREETING"])
    c = socket.create_connection(("127.0.0.1", rx3.port))
    rx3.wait_connections(1)
    t = time.monotonic()
    for r in (rx, rx2, rx3):
        r.stop()                                             # stalled sessions too
    assert time.monotonic() - t < 3
    c.close()
    with pytest.raises(ValueError):
        rx.set(stall_on=["BOGUS"])


def test_receiver_stall_then_answers(receiver):
    rx = receiver(stall=0.3, stall_on=["MAIL"])
    with smtplib.SMTP("127.0.0.1", rx.port, timeout=5) as s:
        s.ehlo()
        t = time.monotonic()
        assert s.mail("a@src.test")[0] == 250
        assert time.monotonic() - t >= 0.25


def test_receiver_starttls(receiver, test_ca):
    rx = receiver(starttls=(test_ca.cert, test_ca.key), require_starttls=True)
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        assert s.mail("a@src.test")[0] == 530
    ctx = ssl.create_default_context(cafile=test_ca.ca_cert)
    with smtplib.SMTP("127.0.0.1", rx.port, local_hostname="client.test") as s:
        s._host = "mx.test"                                 # verify as the MX name
        s.starttls(context=ctx)
        s.ehlo()
        assert not s.has_extn("starttls")
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
    m = rx.wait_for(1)[0]
    assert m.tls and m.tls_version in ("TLSv1.2", "TLSv1.3")
    assert [c.split()[0].upper() for c in m.conn.commands[:3]] == ["EHLO", "STARTTLS", "EHLO"]
    assert m.ehlo_name == "client.test"


# OpenSSL (like sluiced's verifier) matches "*.test" for no name: a wildcard
# needs two labels after it. Use make_cert() for names other than these.
@pytest.mark.parametrize("host,ok", [("mx.test", True), ("localhost", True),
                                     ("127.0.0.1", True), ("other.test", False),
                                     ("mx.example.com", False)])
def test_ca_server_cert_names(test_ca, receiver, host, ok):
    rx = receiver(starttls=test_ca.pair)
    ctx = ssl.create_default_context(cafile=test_ca.ca_cert)
    s = smtplib.SMTP("127.0.0.1", rx.port)
    s._host = host
    try:
        if ok:
            s.starttls(context=ctx)
            assert s.sock.version() is not None
        else:
            with pytest.raises(ssl.SSLCertVerificationError):
                s.starttls(context=ctx)
    finally:
        s.close()


def test_ca_make_cert(test_ca, receiver):
    wrong = test_ca.make_cert(["wrong.example.net"])
    assert os.stat(wrong.key).st_mode & 0o077 == 0
    out = subprocess.run(["openssl", "verify", "-CAfile", test_ca.ca_cert, wrong.cert],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", test_ca.cert],
                          capture_output=True, text=True, check=True).stdout
    for n in ("DNS:mx.test", "DNS:localhost", "DNS:*.test", "IP Address:127.0.0.1"):
        assert n in text
    ctx = ssl.create_default_context(cafile=test_ca.ca_cert)
    rx = receiver(starttls=wrong)
    s = smtplib.SMTP("127.0.0.1", rx.port)
    s._host = "mx.test"
    with pytest.raises(ssl.SSLCertVerificationError):
        s.starttls(context=ctx)
    s.close()
    selfsigned = test_ca.make_cert(["mx.test"], self_signed=True)
    rx2 = receiver(starttls=selfsigned)
    s = smtplib.SMTP("127.0.0.1", rx2.port)
    s._host = "mx.test"
    with pytest.raises(ssl.SSLCertVerificationError):
        s.starttls(context=ctx)
    s.close()
    # a client that does not verify (opportunistic TLS) still gets through
    rx3 = receiver(starttls=selfsigned)
    nover = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    nover.check_hostname = False
    nover.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", rx3.port) as s:
        s.starttls(context=nover)
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert rx3.wait_for(1)[0].tls


def test_receiver_starttls_discards_injected_plaintext(receiver, test_ca):
    rx = receiver(starttls=test_ca.pair)
    c = Raw(rx.port)
    c.reply()
    c.send(b"EHLO raw.test\r\n")
    c.reply()
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert c.reply()[0].startswith("220")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(c.s, server_hostname="mx.test")
    f = t.makefile("rb")
    t.sendall(b"EHLO raw.test\r\nMAIL FROM:<a@src.test>\r\n")
    lines = [f.readline() for _ in range(2)]
    while lines[-1][3:4] == b"-":
        lines.append(f.readline())
    assert f.readline().startswith(b"250 2.1.0")
    f.close()
    t.close()
    c.close()
    rx.wait_idle()
    assert rx.connections[0].starttls_injection
    assert "MAIL FROM:<evil@x.test>" not in rx.connections[0].commands[3:]


def test_receiver_auth(receiver):
    rx = receiver(auth={"user": "secret"}, require_auth=True)
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.ehlo()
        assert s.mail("a@src.test")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("user", "wrong")
    for mech in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", rx.port) as s:
            s.ehlo()
            s.user, s.password = "user", "secret"
            code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()),
                             initial_response_ok=(mech == "PLAIN"))
            assert code == 235
            s.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert [m.auth_user for m in rx.wait_for(2)] == ["user", "user"]


def test_receiver_size_limit(receiver):
    rx = receiver(size=1000)
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.ehlo()
        assert s.esmtp_features["size"] == "1000"
        s.mail("a@src.test")
        s.rcpt("b@dst.test")
        assert s.data(b"x" * 2000 + b"\r\n")[0] == 552


def test_receiver_other_addresses_and_concurrency(receiver):
    rx = receiver(host="127.0.0.2")
    rx6 = receiver(host="::1", port=rx.port)
    c1 = Raw(rx.port, host="127.0.0.2", source="127.0.0.5")
    c2 = Raw(rx.port, host="127.0.0.2")
    c3 = Raw(rx.port, host="127.0.0.2")
    for c in (c1, c2, c3):
        c.reply()
    rx.wait_connections(3)
    assert rx.max_concurrent == 3 and rx.active == 3
    assert rx.connections[0].peer[0] == "127.0.0.5"
    for c in (c1, c2, c3):
        c.close()
    rx.wait_idle()
    assert rx.max_concurrent == 3
    with smtplib.SMTP("::1", rx6.port) as s:
        s.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert rx6.wait_for(1)[0].peer[0] == "::1"
    assert rx6.port == rx.port and rx.messages == []


def test_receiver_wait_for_timeout_message(receiver):
    rx = receiver()
    with smtplib.SMTP("127.0.0.1", rx.port) as s:
        s.ehlo()
    with pytest.raises(AssertionError) as e:
        rx.wait_for(1, timeout=0.3)
    text = str(e.value)
    assert "expected 1 message(s)" in text and "got 0" in text and "EHLO" in text


def test_receiver_stop_is_leak_free():
    before = threading.active_count()
    rxs = [Receiver() for _ in range(5)]
    socks = [socket.create_connection(("127.0.0.1", rx.port)) for rx in rxs]
    for rx in rxs:
        rx.wait_connections(1)
        rx.stop()
        rx.stop()                                           # idempotent
    for s in socks:
        s.close()
    assert threading.active_count() == before
    for rx in rxs:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", rx.port), timeout=1)
    with pytest.raises(OSError):                           # port in use -> clear error
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            Receiver(port=busy.getsockname()[1])


def test_free_port():
    p = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))


# ---- DKIM helpers ---------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["rsa", "ed25519"])
def test_dkim_helpers(tmp_path, dns_server, alg):
    key, txt = make_dkim_key(tmp_path, "s1", alg)
    assert os.stat(key).st_mode & 0o077 == 0
    dns_server.add("s1._domainkey.src.test", "TXT", txt)
    pem = open(key, "rb").read()
    if alg == "rsa":
        sig = dkim.sign(MSG, b"s1", b"src.test", pem)
    else:
        der = subprocess.run(["openssl", "pkey", "-in", key, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        sig = dkim.sign(MSG, b"s1", b"src.test", base64.b64encode(der[-32:]),
                        signature_algorithm=b"ed25519-sha256")
    assert dkim_verify(sig + MSG, dns_server) == [("src.test", "s1", True)]
    assert dkim_verify(sig + MSG.replace(b"hello", b"hellO"), dns_server) == [
        ("src.test", "s1", False)]
    assert dkim_verify(MSG, dns_server) == []


# ---- the sluiced runner ------------------------------------------------------------------
def test_render_placeholders():
    vals = dict(port=2525, spool="/s", tmp="/t")
    assert render("listener 127.0.0.1:{port} {\n relay-from 127.0.0.0/8\n}\n", vals) == \
        "listener 127.0.0.1:2525 {\n relay-from 127.0.0.0/8\n}\n"
    assert render("domain * { route [127.0.0.1]:1 }", vals) == "domain * { route [127.0.0.1]:1 }"
    assert render("listener x:{port} {{\n}}\nspool {spool}", vals) == "listener x:2525 {\n}\nspool /s"
    assert render("domain x {}", vals) == "domain x {}"
    with pytest.raises(KeyError) as e:
        render("spool {spoool}", vals)
    assert "spoool" in str(e.value)


FAKE_SLUICED = r'''#!/usr/bin/python3
# A stand-in for sluiced that follows its command line and signals, used to
# prove the fixture without the real daemon.
import json, os, re, signal, socket, sys, time
args = sys.argv[1:]
assert args[0] == "-f" and args[1] == "-c", args
text = open(args[2]).read()
def get(name):
    m = re.search(r"^\s*%s\s+(\S+)" % name, text, re.M)
    return m.group(1) if m else None
mode = get("fake-mode") or "ok"
if mode == "fail":
    sys.stderr.write("%s:3: unknown directive 'bogus'\n" % args[2]); sys.exit(1)
if mode == "asan":
    sys.stderr.write("==1==ERROR: LeakSanitizer: detected memory leaks\n")
port = int(re.search(r"^listener 127\.0\.0\.1:(\d+)", text, re.M).group(1))
open(get("pidfile"), "w").write("%d\n" % os.getpid())
log = open(get("log"), "a", buffering=1)
acct = open(get("accounting"), "a", buffering=1)
def hup(*_):
    log.write("event=reload ok\n")
def term(*_):
    if mode == "stubborn":
        return
    log.write("event=stop\n"); sys.exit(3 if mode == "badexit" else 0)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, term)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(16)
if os.path.exists(get("control-socket")): os.unlink(get("control-socket"))
ctl = socket.socket(socket.AF_UNIX); ctl.bind(get("control-socket")); ctl.listen(4)
log.write("event=start port=%d\n" % port)
acct.write(json.dumps({"type": "reception", "id": "Q1", "recipient": "b@dst.test"}) + "\n")
acct.write(json.dumps({"type": "delivery", "id": "Q1", "recipient": "b@dst.test"}) + "\n")
acct.write('{"type": "deliv')        # a line being written
while True:
    c, _ = s.accept(); c.close()
'''


@pytest.fixture
def fake_sluiced(tmp_path):
    path = tmp_path / "fake-sluiced"
    path.write_text(FAKE_SLUICED)
    path.chmod(0o755)
    made = []

    def make(conf, **kw):
        d = Sluiced(str(path), "/bin/false", conf, tmp_path / ("inst%d" % len(made)), **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.teardown()


def test_sluiced_runner_lifecycle(fake_sluiced):
    d = fake_sluiced(BASE_CONF, dns_port=5353, resolver=True)
    conf = open(d.conf_path).read()
    for line in ("spool %s" % d.spool, "pidfile %s" % d.pidfile, "log %s" % d.log_path,
                 "accounting %s" % d.acct_path, "control-socket %s" % d.control,
                 "store %s" % d.store, "resolver 127.0.0.1:5353",
                 "listener 127.0.0.1:%d {" % d.port):
        assert line in conf.splitlines()
    d.start()
    assert d.alive() and os.path.exists(d.control)
    assert open(d.pidfile).read().strip() == str(d.pid)
    assert [e["type"] for e in d.events()] == ["reception", "delivery"]
    assert d.wait_event("delivery", id="Q1")[0]["recipient"] == "b@dst.test"
    assert d.wait_event("delivery", recipient=lambda r: r.endswith("@dst.test"))
    with pytest.raises(AssertionError) as e:
        d.wait_event("bounce", timeout=0.3)
    assert "expected 1 'bounce'" in str(e.value) and "delivery" in str(e.value)
    d.reload()
    assert "event=reload" in d.log_text()
    assert d.stop() == 0 and not d.alive()
    d.start()
    first = d.exit_codes[-1][0]
    d.kill9()
    assert not d.alive() and d.exit_codes[-1] != (first, 0)
    d.start()
    assert d.teardown() == []


def test_sluiced_runner_reports_failures(fake_sluiced):
    d = fake_sluiced("fake-mode fail\n" + BASE_CONF)
    with pytest.raises(SluicedError) as e:
        d.start()
    assert "exited with code 1" in str(e.value) and "unknown directive" in str(e.value)
    d = fake_sluiced("fake-mode badexit\n" + BASE_CONF)
    d.start()
    with pytest.raises(SluicedError) as e:
        d.stop()
    assert "exited with code 3" in str(e.value)
    d = fake_sluiced("fake-mode asan\n" + BASE_CONF)
    d.start()
    problems = d.teardown()
    assert len(problems) == 1 and "LeakSanitizer" in problems[0]
    d = fake_sluiced("fake-mode stubborn\n" + BASE_CONF)
    d.start()
    with pytest.raises(SluicedError) as e:
        d.stop(timeout=0.5)
    assert "did not exit" in str(e.value) and not d.alive()


def test_sluiced_runner_extra_placeholders(fake_sluiced):
    d = fake_sluiced(BASE_CONF + "domain * { route [127.0.0.1]:{rx_port} }\n", rx_port=2626)
    assert "domain * { route [127.0.0.1]:2626 }" in open(d.conf_path).read()
    assert "resolver" not in open(d.conf_path).read()
    d = fake_sluiced("control-socket {tmp}/other.sock\nlog {tmp}/other.log\n" + BASE_CONF)
    assert d.control == os.path.join(d.tmp, "other.sock")
    assert d.log_path == os.path.join(d.tmp, "other.log")
    assert open(d.conf_path).read().count("control-socket") == 1
    d.start()
    assert os.path.exists(os.path.join(d.tmp, "other.log"))
    d.stop()


def test_conf_helpers(receiver):
    rx = receiver()
    text = route_conf(rx)
    assert text.startswith(BASE_CONF)
    assert "domain * { route [127.0.0.1]:%d retry-after 1s,2s bounce-after 30s" % rx.port in text
    assert "smtp-port 2525\n" in mx_conf(2525)
    assert "resolver 127.0.0.1:{dns_port}" in mx_conf(2525)


# ---- the real sluiced (skips until it is built) ---------------------------------------------
def test_sluiced_real_relay(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", ["b@dst.test"], MSG)
    m = rx.wait_for(1)[0]
    assert m.rcpt_tos == ["b@dst.test"] and m.mail_from
    assert b"hello\r\n" in m.data and b"Subject: selftest" in m.data
    ev = d.wait_event("delivery", recipient="b@dst.test")[0]
    if qid and " " not in qid:
        assert ev["id"] == qid
    assert d.wait_event("reception")
    d.stop()
    assert not d.alive()


def test_sluiced_real_control(sluiced):
    d = sluiced(BASE_CONF)
    status, body = d.api("GET", "/v1/status")
    assert status == 200 and isinstance(body, dict)
    status, body = d.api("GET", "/v1/no-such-thing")
    assert status == 404 and "error" in body
    out = d.ctl("status")
    assert out.strip()
    assert isinstance(d.ctl("status", json=True), dict)
    d.reload()
    assert d.alive()
    d.stop()


def test_sluiced_real_restart_keeps_spool(sluiced, receiver):
    rx = receiver(data_reply="451 4.3.0 try later")
    d = sluiced(route_conf(rx))
    d.send("a@src.test", "b@dst.test", MSG)
    rx.wait_connections(1)
    d.stop()
    d.start()
    rx.set(data_reply=None)
    assert rx.wait_for(1, timeout=20)[0].rcpt_tos == ["b@dst.test"]
    d.kill9()
    d.start()
    assert d.alive()


def test_sluiced_real_mx_delivery(sluiced, receiver, dns_server):
    rx = receiver(host="127.0.0.3")
    dns_server.add("dst.test", "MX", (10, "mx.dst.test"))
    dns_server.add("mx.dst.test", "A", "127.0.0.3")
    d = sluiced(mx_conf(rx))
    d.send("a@src.test", "b@dst.test", MSG)
    assert rx.wait_for(1)[0].rcpt_tos == ["b@dst.test"]
    assert dns_server.queried("dst.test", "MX") >= 1
