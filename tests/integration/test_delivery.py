"""Delivery through the SMTP client (smtp_client.c) and DSNs (dsn.c), over
static routes: what real receivers saw on the wire, and the accounting
event each outcome produced."""

import email
import email.policy
import smtplib
import socket
import threading
import time

import pytest

from conftest import BASE_CONF, route_conf

SOURCES = """\
source s1 { address 127.0.0.2 ehlo s1.test }
source s2 { address 127.0.0.3 ehlo s2.test }
pool default { source s1 weight 1 }
pool other { source s2 weight 1 }
"""


def msg(subject="test", body="hello\r\n", frm="a@src.test", to="b@dst.test"):
    return "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (frm, to, subject, body)


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1]


def dsn_parts(m):
    """(report message, list of per-recipient field dicts) of a received DSN."""
    em = email.message_from_bytes(m.data, policy=email.policy.compat32)
    assert em.get_content_type() == "multipart/report"
    assert em.get_param("report-type") == "delivery-status"
    parts = em.get_payload()
    ds = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    assert len(ds) == 1
    # compat32 parses message/delivery-status as a list of header blocks
    blocks = ds[0].get_payload()
    per_msg = dict(blocks[0].items())
    per_rcpt = [dict(b.items()) for b in blocks[1:]]
    return em, per_msg, per_rcpt


def test_pipelined_delivery_and_events(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", ["b@dst.test", "c@dst.test"], msg())
    m = rx.wait_for(1)[0]
    assert m.mail_from == "a@src.test"
    assert sorted(m.rcpt_tos) == ["b@dst.test", "c@dst.test"]
    # PIPELINING offered: MAIL, both RCPTs and DATA arrived in one read
    assert m.conn.pipelined("MAIL", "RCPT", "DATA")
    evs = d.wait_event("delivery", n=2, id=qid)
    for ev in evs:
        assert ev["mx_ip"] == "127.0.0.1"
        assert ev["reply"].startswith("250")
        assert ev["attempt"] == 1
        assert ev["site"]


def test_not_pipelined_when_not_offered(sluiced, receiver):
    rx = receiver(pipelining=False)
    d = sluiced(route_conf(rx))
    d.send("a@src.test", ["b@dst.test", "c@dst.test"], msg())
    m = rx.wait_for(1)[0]
    assert sorted(m.rcpt_tos) == ["b@dst.test", "c@dst.test"]
    assert not m.conn.pipelined("MAIL", "RCPT")
    assert not m.conn.pipelined("RCPT", "DATA")
    # each command in its own read
    for p in m.conn.packets:
        verbs = [c.split(" ", 1)[0].split(":", 1)[0].upper() for c in p]
        assert len([v for v in verbs if v in ("MAIL", "RCPT", "DATA")]) <= 1


def test_dot_stuffing_round_trip(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    body = ("first\r\n.\r\n..\r\n.hidden line\r\n...three\r\n"
            "middle.dot\r\n. space\r\n\r\n.\r\nlast\r\n")
    d.send("a@src.test", "b@dst.test", msg(body=body))
    m = rx.wait_for(1)[0]
    assert body_of(m.data) == body.encode()


def test_body_without_final_newline(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    d.send("a@src.test", "b@dst.test", msg(body="no newline at the end"))
    m = rx.wait_for(1)[0]
    assert body_of(m.data).rstrip(b"\r\n") == b"no newline at the end"


@pytest.mark.parametrize("pool,addr,ehlo", [("default", "127.0.0.2", "s1.test"),
                                            ("other", "127.0.0.3", "s2.test")])
def test_source_address_and_ehlo(sluiced, receiver, pool, addr, ehlo):
    rx = receiver()
    d = sluiced(route_conf(rx, base=BASE_CONF + SOURCES))
    text = msg() if pool == "default" else "X-Sluice-Pool: other\r\n" + msg()
    d.send("a@src.test", "b@dst.test", text)
    m = rx.wait_for(1)[0]
    assert m.peer[0] == addr
    assert m.ehlo_name == ehlo
    ev = d.wait_event("delivery")[0]
    assert ev["source_ip"] == addr


def test_rcpt_refused_bounces_with_dsn(sluiced, receiver):
    def rcpt(addr):
        return "550 5.1.1 <%s>: no such user" % addr if addr.startswith("bad") else None
    rx = receiver(rcpt_reply=rcpt)
    d = sluiced(route_conf(rx))
    qid = d.send("sender@src.test", ["good@dst.test", "bad@dst.test"],
                 msg(subject="will half bounce", frm="sender@src.test"))
    ev = d.wait_event("bounce", id=qid)[0]
    assert ev["recipient"] == "bad@dst.test"
    assert ev["status"] == "5.1.1" and ev["code"] == 550
    assert d.wait_event("delivery", id=qid)[0]["recipient"] == "good@dst.test"
    # the DSN comes back to the sender (routed to the same receiver)
    msgs = rx.wait_for(2)
    dsn = [m for m in msgs if m.mail_from == ""]
    assert len(dsn) == 1
    assert dsn[0].rcpt_tos == ["sender@src.test"]
    em, per_msg, per_rcpt = dsn_parts(dsn[0])
    assert per_msg["Reporting-MTA"] == "dns; mta.test"
    assert "Arrival-Date" in per_msg
    assert len(per_rcpt) == 1
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; bad@dst.test"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Remote-MTA"].startswith("dns; ")
    assert "no such user" in r["Diagnostic-Code"] and r["Diagnostic-Code"].startswith("smtp;")
    assert "Last-Attempt-Date" in r
    assert em["Subject"] == "Undelivered Mail Returned to Sender"
    assert "MAILER-DAEMON@mta.test" in em["From"]
    hdrs = [p for p in em.get_payload() if p.get_content_type() == "text/rfc822-headers"]
    assert len(hdrs) == 1
    assert "Subject: will half bounce" in hdrs[0].get_payload()
    # a DSN never bounces or gets a DSN itself: it went from the null sender
    assert dsn[0].mail_from == ""


def _send_with_ret(d, ret, body):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=30)
    try:
        s.ehlo()
        code, _ = s.mail("sender@src.test", ["RET=%s" % ret] if ret else [])
        assert code == 250
        assert s.rcpt("bad@dst.test")[0] == 250
        assert s.data(msg(subject="returned", frm="sender@src.test", body=body))[0] == 250
        s.quit()
    finally:
        s.close()


@pytest.mark.parametrize("ret", ["FULL", "HDRS", None])
def test_dsn_returns_what_ret_asks_for(sluiced, receiver, ret):
    """RFC 3461 4.3: RET=FULL returns the whole message (message/rfc822),
    RET=HDRS and no RET return the headers (text/rfc822-headers)."""
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 no such user" if a.startswith("bad") else None)
    d = sluiced(route_conf(rx))
    body = "line one\r\n.leading dot kept\r\nthe end\r\n"
    _send_with_ret(d, ret, body)
    dsn = [m for m in rx.wait_for(1) if m.mail_from == ""][0]
    em, _, per_rcpt = dsn_parts(dsn)
    assert per_rcpt[0]["Status"] == "5.1.1"
    types = [p.get_content_type() for p in em.get_payload()]
    if ret == "FULL":
        assert types[-1] == "message/rfc822"
        orig = em.get_payload()[-1].get_payload()[0]
        assert orig["Subject"] == "returned"
        assert orig.get_payload() == "line one\n.leading dot kept\nthe end\n" or \
            orig.get_payload().replace("\r\n", "\n") == "line one\n.leading dot kept\nthe end\n"
        assert "It is attached below." in em.get_payload()[0].get_payload()
    else:
        assert types[-1] == "text/rfc822-headers"
        assert "the end" not in em.get_payload()[-1].get_payload()


def test_dsn_ret_full_of_a_big_message_returns_headers(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 no such user" if a.startswith("bad") else None)
    d = sluiced(route_conf(rx))
    _send_with_ret(d, "FULL", ("x" * 998 + "\r\n") * 1200)     # ~1.2 MB
    dsn = [m for m in rx.wait_for(1, timeout=30) if m.mail_from == ""][0]
    em, _, _ = dsn_parts(dsn)
    assert em.get_payload()[-1].get_content_type() == "text/rfc822-headers"
    assert "only its headers are" in em.get_payload()[0].get_payload()
    assert len(dsn.data) < 300 * 1024


def test_mail_refused_every_recipient_gets_it(sluiced, receiver):
    rx = receiver(mail_reply="553 5.7.1 sender refused")
    d = sluiced(route_conf(rx))
    qid = d.send("", ["x@dst.test", "y@dst.test"], msg(frm="x@src.test"))
    evs = d.wait_event("bounce", n=2, id=qid)
    assert {e["recipient"] for e in evs} == {"x@dst.test", "y@dst.test"}
    assert all(e["status"] == "5.7.1" for e in evs)
    # null sender: no DSN goes anywhere
    time.sleep(1)
    assert rx.messages == []


def test_transient_then_retry_after(sluiced, receiver):
    calls = []

    def data(m):
        calls.append(time.monotonic())
        return "451 4.3.0 try again later" if len(calls) == 1 else None
    rx = receiver(data_reply=data)
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["status"] == "4.3.0" and t["attempt"] == 1
    ok = d.wait_event("delivery", id=qid, timeout=15)[0]
    assert ok["attempt"] == 2
    assert len(rx.wait_for(1)) == 1
    # retry-after 1s: the second attempt did not come sooner
    assert calls[1] - calls[0] >= 0.9


def test_connection_dropped_in_data_is_transient(sluiced, receiver):
    rx = receiver(drop_in_data=True)
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["code"] == 451 and t["status"] == "4.4.2"
    rx.set(drop_in_data=False)
    d.wait_event("delivery", id=qid, timeout=15)
    time.sleep(0.5)
    assert len(rx.messages) == 1


def test_421_greeting_is_transient(sluiced, receiver):
    rx = receiver(greeting="421 4.3.2 too busy")
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["code"] == 421
    rx.set(greeting=None)
    d.wait_event("delivery", id=qid, timeout=15)


def test_421_after_rcpt_closes_and_retries(sluiced, receiver):
    state = {"n": 0}

    def rcpt(addr):
        state["n"] += 1
        return "421 4.7.0 closing, too many" if state["n"] == 1 else None
    rx = receiver(rcpt_reply=rcpt, pipelining=False)
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["code"] == 421 and t["status"] == "4.7.0"
    d.wait_event("delivery", id=qid, timeout=15)


def test_expiry_sends_rfc3464_dsn(sluiced, receiver):
    # the original never gets in; the DSN (null sender) does
    rx = receiver(data_reply=lambda m: None if m.mail_from == "" else "451 4.2.0 mailbox busy")
    conf = BASE_CONF + "domain * { route [127.0.0.1]:%d retry-after 1s bounce-after 3s }\n" % rx.port
    d = sluiced(conf)
    qid = d.send("owner@src.test", "late@dst.test",
                 msg(subject="expiring", frm="owner@src.test", to="late@dst.test"))
    d.wait_event("transient", id=qid)
    ev = d.wait_event("expired", id=qid, timeout=20)[0]
    assert ev["recipient"] == "late@dst.test"
    dsn = rx.wait_for(1, timeout=15)[0]
    assert dsn.mail_from == "" and dsn.rcpt_tos == ["owner@src.test"]
    em, per_msg, per_rcpt = dsn_parts(dsn)
    assert per_rcpt[0]["Final-Recipient"] == "rfc822; late@dst.test"
    assert per_rcpt[0]["Action"] == "failed"
    assert per_rcpt[0]["Status"] == "4.2.0"
    assert "mailbox busy" in per_rcpt[0]["Diagnostic-Code"]
    assert em["To"] == "<owner@src.test>"


def test_notify_never_header_means_no_dsn(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 unknown" if a.startswith("bad") else None)
    d = sluiced(route_conf(rx))
    qid = d.send("a@src.test", "bad@dst.test", "X-Sluice-Notify: never\r\n" + msg())
    d.wait_event("bounce", id=qid)
    time.sleep(1.5)
    assert rx.messages == []


def test_size_limit_bounces_without_sending(sluiced, receiver):
    rx = receiver(size=200)
    d = sluiced(route_conf(rx))
    qid = d.send("", "b@dst.test", msg(body="x" * 2000 + "\r\n"))
    ev = d.wait_event("bounce", id=qid)[0]
    assert ev["code"] == 552 and ev["status"] == "5.3.4"
    for c in rx.connections:
        assert not any(cmd.upper().startswith("MAIL") for cmd in c.commands)


def test_smtputf8_to_server_without_it_bounces(sluiced, receiver):
    rx = receiver(smtputf8=False)
    d = sluiced(route_conf(rx))
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=30)
    try:
        s.ehlo()
        code, _ = s.mail("", ["SMTPUTF8"])
        assert code == 250
        code, _ = s.rcpt("jürgen@dst.test")
        assert code == 250
        code, resp = s.data("From: a@src.test\r\nTo: jürgen@dst.test\r\n"
                            "Subject: utf8\r\n\r\nhallo\r\n".encode())
        assert code == 250
        s.quit()
    finally:
        s.close()
    ev = d.wait_event("bounce")[0]
    assert ev["code"] == 553 and ev["status"] == "5.6.7"
    for c in rx.connections:
        assert not any(cmd.upper().startswith("MAIL") for cmd in c.commands)


def test_smtputf8_param_when_offered(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=30)
    try:
        s.ehlo()
        assert s.mail("", ["SMTPUTF8"])[0] == 250
        assert s.rcpt("jürgen@dst.test")[0] == 250
        assert s.data("Subject: utf8\r\n\r\nhallo\r\n".encode())[0] == 250
        s.quit()
    finally:
        s.close()
    m = rx.wait_for(1)[0]
    assert m.rcpt_tos == ["jürgen@dst.test"]
    assert "SMTPUTF8" in [o.upper() for o in m.mail_options]


def test_opportunistic_starttls(sluiced, receiver, test_ca):
    rx = receiver(starttls=(test_ca.cert, test_ca.key))
    d = sluiced(route_conf(rx))
    d.send("a@src.test", "b@dst.test", msg())
    m = rx.wait_for(1)[0]
    assert m.tls
    assert not m.conn.starttls_injection
    assert d.wait_event("delivery")[0]["tls"] is True


def test_tls_required_but_not_offered(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx, extra="tls required"))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["status"] == "4.7.4"
    assert rx.messages == []


def test_tls_verify_accepts_right_name(sluiced, receiver, test_ca, monkeypatch):
    monkeypatch.setenv("SLUICE_CA_FILE", test_ca.ca_cert)
    rx = receiver(starttls=(test_ca.cert, test_ca.key))     # names include 127.0.0.1
    d = sluiced(route_conf(rx, extra="tls verify"))
    d.send("a@src.test", "b@dst.test", msg())
    assert rx.wait_for(1)[0].tls


def test_tls_verify_refuses_wrong_name(sluiced, receiver, test_ca, monkeypatch):
    monkeypatch.setenv("SLUICE_CA_FILE", test_ca.ca_cert)
    pair = test_ca.make_cert(["elsewhere.example"])
    rx = receiver(starttls=(pair.cert, pair.key))
    d = sluiced(route_conf(rx, extra="tls verify"))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["status"] == "4.7.5"
    time.sleep(0.5)
    assert rx.messages == []


def test_restart_mid_queue_delivers_each_recipient_once(sluiced, receiver):
    # messages "keep-*" are accepted at once, "hold-*" deferred until restart
    rx = receiver(data_reply=lambda m: "451 4.3.0 later" if b"Subject: hold" in m.data else None)
    d = sluiced(route_conf(rx))
    for i in range(3):
        d.send("a@src.test", "keep%d@dst.test" % i, msg(subject="keep %d" % i))
    for i in range(3):
        d.send("a@src.test", "hold%d@dst.test" % i, msg(subject="hold %d" % i))
    d.wait_event("delivery", n=3)
    d.wait_event("transient", n=3)
    d.kill9()
    rx.set(data_reply=None)
    d.start()
    rx.wait_for(6, timeout=20)
    time.sleep(2)
    rcpts = rx.recipients
    assert sorted(rcpts) == sorted(["keep%d@dst.test" % i for i in range(3)] +
                                   ["hold%d@dst.test" % i for i in range(3)])


def test_auth_to_smart_host(sluiced, receiver, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    rx = receiver(auth={"relay": "s3cret"}, require_auth=True)
    d = sluiced(route_conf(rx, extra="route-auth relay %s" % pw))
    d.send("a@src.test", "b@dst.test", msg())
    m = rx.wait_for(1)[0]
    assert m.auth_user == "relay"


def test_helo_fallback(sluiced, receiver):
    rx = receiver(ehlo=False)
    d = sluiced(route_conf(rx))
    d.send("a@src.test", "b@dst.test", msg())
    m = rx.wait_for(1)[0]
    assert any(c.upper().startswith("HELO ") for c in m.conn.commands)
    # no EHLO: no PIPELINING either
    assert not m.conn.pipelined("MAIL", "RCPT")


@pytest.mark.parametrize("tls", [False, True])
def test_large_body_byte_for_byte(sluiced, receiver, test_ca, tls):
    rx = receiver(starttls=(test_ca.cert, test_ca.key) if tls else None)
    d = sluiced(route_conf(rx))
    lines = []
    for i in range(40000):
        lines.append(("." if i % 7 == 0 else "") + "line %06d %s" % (i, "x" * (i % 50)))
    body = "\r\n".join(lines) + "\r\n"
    d.send("a@src.test", "b@dst.test", msg(body=body), timeout=60)
    m = rx.wait_for(1, timeout=30)[0]
    assert m.tls == tls
    assert body_of(m.data) == body.encode()


def test_idle_connection_reused_then_quit(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx, extra="idle-timeout 2s"))
    d.send("a@src.test", "b@dst.test", msg(subject="one"))
    rx.wait_for(1)
    d.send("a@src.test", "c@dst.test", msg(subject="two"))
    msgs = rx.wait_for(2)
    # the second message went over the idle connection of the first
    assert msgs[0].conn is msgs[1].conn
    mails = [c for c in msgs[0].conn.commands if c.upper().startswith("MAIL")]
    assert len(mails) == 2
    # and after idle-timeout it says QUIT
    rx.wait_idle(timeout=10)
    assert msgs[0].conn.commands[-1].upper() == "QUIT"


def test_rset_after_refused_transaction(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 unknown" if a.startswith("bad") else None)
    d = sluiced(route_conf(rx, extra="idle-timeout 5s"))
    q1 = d.send("", "bad@dst.test", msg(subject="one"))
    d.wait_event("bounce", id=q1)
    d.send("", "good@dst.test", msg(subject="two"))
    m = rx.wait_for(1)[0]
    cmds = [c.split(" ", 1)[0].split(":", 1)[0].upper() for c in m.conn.commands]
    # MAIL was accepted, every RCPT refused: the server holds a transaction
    # that RSET clears before the next MAIL
    first_mail = cmds.index("MAIL")
    second_mail = cmds.index("MAIL", first_mail + 1)
    assert "RSET" in cmds[first_mail:second_mail]


class BrokenTLSPeer:
    """Offers STARTTLS, answers 220, then speaks garbage instead of TLS; a
    session that does not try STARTTLS is served plainly."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.sessions = []                  # list of command lists
        self.data = []
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            try:
                self.session(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def session(self, conn):
        conn.settimeout(10)
        f = conn.makefile("rb")
        cmds = []
        self.sessions.append(cmds)
        conn.sendall(b"220 broken.test ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode().strip()
            cmds.append(cmd)
            verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "EHLO":
                conn.sendall(b"250-broken.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            elif verb == "STARTTLS":
                conn.sendall(b"220 go ahead\r\n")
                conn.sendall(b"this is not a TLS record at all\r\n" * 4)
                return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif verb == "DATA":
                conn.sendall(b"354 go\r\n")
                data = b""
                while True:
                    l = f.readline()
                    if l in (b".\r\n", b""):
                        break
                    data += l
                self.data.append(data)
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 what\r\n")

    def stop(self):
        self.stop_flag = True
        self.thread.join(5)
        self.sock.close()


def test_opportunistic_tls_failure_falls_back_to_plaintext(sluiced, receiver):
    peer = BrokenTLSPeer()
    try:
        d = sluiced(route_conf(peer.port))
        qid = d.send("a@src.test", "b@dst.test", msg(subject="fallback"))
        ev = d.wait_event("delivery", id=qid)[0]
        assert ev["tls"] is False
        assert len(peer.data) == 1 and b"Subject: fallback" in peer.data[0]
        # first session tried STARTTLS; the one that delivered did not
        assert "STARTTLS" in peer.sessions[0]
        assert not any(c.upper() == "STARTTLS" for c in peer.sessions[-1])
    finally:
        peer.stop()


def test_tls_required_handshake_failure_is_transient(sluiced, receiver):
    peer = BrokenTLSPeer()
    try:
        d = sluiced(route_conf(peer.port, extra="tls required"))
        qid = d.send("a@src.test", "b@dst.test", msg())
        t = d.wait_event("transient", id=qid)[0]
        assert t["status"] == "4.7.5"
        assert peer.data == []
    finally:
        peer.stop()


def test_8bitmime_param_passed_on(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=30)
    try:
        s.ehlo()
        assert s.mail("", ["BODY=8BITMIME"])[0] == 250
        assert s.rcpt("b@dst.test")[0] == 250
        assert s.data("Subject: 8bit\r\n\r\nGr\xfc\xdfe\r\n".encode("utf-8"))[0] == 250
        s.quit()
    finally:
        s.close()
    m = rx.wait_for(1)[0]
    assert "BODY=8BITMIME" in [o.upper() for o in m.mail_options]
    assert "Grüße".encode() in m.data


def test_many_recipients_one_pipelined_transaction(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 no" if a.startswith("x") else None)
    d = sluiced(route_conf(rx))
    rcpts = ["r%03d@dst.test" % i for i in range(120)] + ["x%d@dst.test" % i for i in range(5)]
    qid = d.send("", rcpts, msg())
    # max-rcpt-per-message (default 100) splits it into two transactions
    msgs = rx.wait_for(2)
    assert sorted(r for m in msgs for r in m.rcpt_tos) == sorted(rcpts[:120])
    assert max(len(m.rcpt_tos) for m in msgs) == 100
    assert all(m.conn.pipelined("MAIL", "DATA") for m in msgs)
    assert len(d.wait_event("delivery", n=120, id=qid)) == 120
    assert len(d.wait_event("bounce", n=5, id=qid)) == 5


def test_dot_timeout_is_transient(sluiced, receiver):
    rx = receiver(stall=4, stall_on=("DOT",))
    d = sluiced(route_conf(rx, extra="dot-timeout 1s"))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["status"] == "4.4.2" and "timeout" in t["reply"]


def test_greeting_timeout_is_transient(sluiced, receiver):
    rx = receiver(stall=4, stall_on=("GREETING",))
    d = sluiced(route_conf(rx, extra="greeting-timeout 1s"))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["code"] // 100 == 4 and "greeting" in t["reply"]
