"""VERP and inbound reports: each send's envelope sender is
bounce+TOKEN@bounce-domain (one recipient per transaction); a DSN mailed to
that address from a client with no relay rights becomes a `bounce` event for
the right recipient and a suppression entry; a forged token is refused at
RCPT; an ARF report to the FBL address becomes a `complaint`; an
out-of-office reply is no bounce. The report listener has no relay-from, so
"accepted from anyone, only for those addresses" is what is tested."""

import os
import re
import smtplib
import subprocess
import urllib.parse

import pytest

from conftest import BASE_CONF, route_conf
from peers import free_port, wait_until

BOUNCE_DOMAIN = "bounces.test"
FBL = "fbl@mta.test"
VERP_RE = re.compile(r"^bounce\+([0-9A-Z]{40,43})@" + re.escape(BOUNCE_DOMAIN) + "$")


@pytest.fixture
def verp_key(tmp_path):
    path = tmp_path / "verp.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return str(path)


def inbound_conf(rx, key):
    """Injection on {port} (relay for loopback), reports on {inport}
    (no relay-from: nobody may relay there)."""
    base = BASE_CONF + ("bounce-domain %s\nverp-key %s\nfbl-address %s\n"
                        "listener 127.0.0.1:{inport} {\n    max-message-size 1M\n}\n"
                        % (BOUNCE_DOMAIN, key, FBL))
    return route_conf(rx, base=base)


def start(sluiced, rx, key):
    return sluiced(inbound_conf(rx, key), inport=free_port())


def deliver(d, rx, rcpt, n, subject="November offers"):
    """Send one message to rcpt; return (queue id, VERP address it went out with)."""
    qid = d.send("news@src.test", rcpt,
                 "From: news@src.test\r\nTo: %s\r\nSubject: %s\r\n"
                 "Message-ID: <%s.%d@src.test>\r\n\r\nOffers.\r\n" % (rcpt, subject, rcpt, n))
    msgs = rx.wait_for(n)
    m = [m for m in msgs if m.rcpt_tos == [rcpt]][-1]
    assert VERP_RE.match(m.mail_from), m.mail_from
    d.wait_event("delivery", recipient=rcpt)
    return qid, m.mail_from


def report_client(d):
    c = smtplib.SMTP("127.0.0.1", d.values()["inport"], local_hostname="mx.remote.test",
                     timeout=30)
    c.ehlo()
    return c


def mail_report(d, rcpt, body, sender=""):
    c = report_client(d)
    try:
        assert c.mail(sender)[0] == 250
        code, resp = c.rcpt(rcpt)
        assert code == 250, resp
        code, resp = c.data(body.encode())
        return code, resp.decode()
    finally:
        c.quit()


def dsn(verp, rcpt, status, action="failed", diag=None):
    diag = diag or "550 5.1.1 <%s>: Recipient address rejected: User unknown" % rcpt
    return (
        "From: MAILER-DAEMON@mx.remote.test (Mail Delivery System)\r\n"
        "To: %(verp)s\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"B0UND.1/mx.remote.test\"\r\n"
        "\r\n"
        "--B0UND.1/mx.remote.test\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
        "\r\n"
        "--B0UND.1/mx.remote.test\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.remote.test\r\n"
        "\r\n"
        "Final-Recipient: rfc822; %(rcpt)s\r\n"
        "Original-Recipient: rfc822;%(rcpt)s\r\n"
        "Action: %(action)s\r\n"
        "Status: %(status)s\r\n"
        "Remote-MTA: dns; mailbox.remote.test\r\n"
        "Diagnostic-Code: smtp; %(diag)s\r\n"
        "\r\n"
        "--B0UND.1/mx.remote.test\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "Return-Path: <%(verp)s>\r\n"
        "To: %(rcpt)s\r\n"
        "Subject: November offers\r\n"
        "\r\n"
        "--B0UND.1/mx.remote.test--\r\n" % dict(verp=verp, rcpt=rcpt, status=status,
                                                   action=action, diag=diag))


def arf(verp, rcpt):
    return (
        "From: feedback@isp.remote.test\r\n"
        "To: %(fbl)s\r\n"
        "Subject: complaint about message from 127.0.0.1\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report;\r\n"
        "    boundary=\"arf-part\"\r\n"
        "\r\n"
        "--arf-part\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "This is an email abuse report for an email message received from IP\r\n"
        "192.0.2.77 on Mon, 23 Nov 2026 12:00:00 +0000.\r\n"
        "\r\n"
        "--arf-part\r\n"
        "Content-Type: message/feedback-report\r\n"
        "\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        "Original-Mail-From: <%(verp)s>\r\n"
        "Arrival-Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
        "Source-IP: 192.0.2.77\r\n"
        "\r\n"
        "--arf-part\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Return-Path: <%(verp)s>\r\n"
        "From: news@src.test\r\n"
        "To: <redacted>\r\n"
        "Subject: November offers\r\n"
        "\r\n"
        "Offers.\r\n"
        "--arf-part--\r\n" % dict(fbl=FBL, verp=verp, rcpt=rcpt))


def suppressed(d, addr):
    status, body = d.api("GET", "/v1/suppression/" + urllib.parse.quote(addr))
    return status == 200, body


def test_verp_envelope_per_recipient(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    d.send("news@src.test", ["a@dst.test", "b@dst.test"], "Subject: t\r\n\r\nhello\r\n")
    msgs = rx.wait_for(2)
    # VERP: one envelope, so one transaction, per recipient
    assert sorted(tuple(m.rcpt_tos) for m in msgs) == [("a@dst.test",), ("b@dst.test",)]
    senders = [m.mail_from for m in msgs]
    for s in senders:
        assert VERP_RE.match(s), s
        assert len(s.split("@")[0]) <= 64           # RFC 5321 local-part limit
    assert senders[0] != senders[1]
    # the message headers are untouched; the null sender stays null
    d.send("", "c@dst.test", "Subject: t\r\n\r\nhello\r\n")
    m = [m for m in rx.wait_for(3) if m.rcpt_tos == ["c@dst.test"]][0]
    assert m.mail_from == ""


def test_async_dsn_becomes_bounce_and_suppression(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    qid, verp = deliver(d, rx, "gone@dst.test", 1)

    # a client with no relay rights: reports yes, relaying no
    c = report_client(d)
    assert c.mail("")[0] == 250
    code, resp = c.rcpt("someone@dst.test")
    assert code == 550 and b"5.7.1" in resp
    c.quit()

    # a delay notice first: transient, nothing suppressed
    code, resp = mail_report(d, verp, dsn(verp, "gone@dst.test", "4.4.7", action="delayed",
                                          diag="451 4.4.7 Try again later"))
    assert code == 250, resp
    t = d.wait_event("transient", recipient="gone@dst.test",
                     **{"async": True})[0]
    assert t["id"] == qid and t["status"] == "4.4.7" and t["verified"] is True

    # then the bounce, with the VERP address lower-cased on the way back
    code, resp = mail_report(d, verp.lower(), dsn(verp, "gone@dst.test", "5.1.1"))
    assert code == 250 and "2.6.0" in resp, resp
    b = d.wait_event("bounce", recipient="gone@dst.test", **{"async": True})[0]
    assert b["id"] == qid
    assert b["message_id"] == "<gone@dst.test.1@src.test>"
    assert b["sender"] == "news@src.test"
    assert b["status"] == "5.1.1"
    assert b["category"] == "bad-mailbox"
    assert (b["ses_type"], b["ses_subtype"]) == ("Permanent", "NoEmail")
    assert b["remote_mta"] == "mailbox.remote.test"
    wait_until(lambda: suppressed(d, "gone@dst.test")[0], 10, what="suppression entry")
    # the report was read, not relayed anywhere
    assert len(rx.wait_for(1)) == 1


def test_forged_token_refused_and_logged(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    _, verp = deliver(d, rx, "x@dst.test", 1)
    local, domain = verp.split("@")
    token = local[len("bounce+"):]
    # change one character of the MAC, then of the queue id
    forged = []
    for pos in (len(token) - 2, 3):
        ch = "A" if token[pos] != "A" else "B"
        forged.append("bounce+%s%s%s@%s" % (token[:pos], ch, token[pos + 1:], domain))
    c = report_client(d)
    assert c.mail("")[0] == 250
    for f in forged:
        code, resp = c.rcpt(f)
        assert code == 550 and b"5.7.1" in resp, (f, resp)
    code, resp = c.rcpt("postmaster@" + BOUNCE_DOMAIN)     # no such mailbox there
    assert code == 550 and b"5.1.1" in resp
    code, resp = c.rcpt(verp)                                # the real one still works
    assert code == 250
    c.quit()
    wait_until(lambda: d.log_text().count("event=verp-forged") >= 2, 10,
               what="verp-forged log lines")
    assert forged[0] in d.log_text()


def test_report_and_relay_not_mixed(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    _, verp = deliver(d, rx, "y@dst.test", 1)
    # on the relay listener: a relayed recipient, then a report address
    c = d.smtp()
    c.ehlo()
    assert c.mail("news@src.test")[0] == 250
    assert c.rcpt("z@dst.test")[0] == 250
    code, resp = c.rcpt(verp)
    assert code == 452 and b"4.5.3" in resp
    c.rset()
    assert c.mail("")[0] == 250
    assert c.rcpt(FBL)[0] == 250
    code, resp = c.rcpt("z@dst.test")
    assert code == 452 and b"4.5.3" in resp
    c.quit()


def test_arf_complaint_to_fbl_address(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    qid, verp = deliver(d, rx, "reader@dst.test", 1)
    # the FBL address, from a client without relay rights; the recipient is
    # redacted: the VERP Return-Path of the original names the send
    code, resp = mail_report(d, FBL, arf(verp, "reader@dst.test"),
                             sender="feedback@isp.remote.test")
    assert code == 250, resp
    ev = d.wait_event("complaint", recipient="reader@dst.test")[0]
    assert ev["id"] == qid
    assert ev["feedback_type"] == "abuse"
    assert ev["source_ip"] == "192.0.2.77"
    assert ev["verified"] is True
    assert ev["message_id"] == "<reader@dst.test.1@src.test>"
    wait_until(lambda: suppressed(d, "reader@dst.test")[0], 10, what="suppression entry")
    ok, body = suppressed(d, "reader@dst.test")
    assert "complaint" in str(body)


def test_unverified_complaint_suppresses_nothing(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    # anyone can mail the FBL address: without a valid token, an event only
    body = arf("bounce+NOTATOKEN@" + BOUNCE_DOMAIN, "victim@dst.test").replace(
        "Version: 1\r\n", "Version: 1\r\nOriginal-Rcpt-To: <victim@dst.test>\r\n")
    code, resp = mail_report(d, FBL, body)
    assert code == 250, resp
    ev = d.wait_event("complaint", recipient="victim@dst.test")[0]
    assert ev["verified"] is False and "id" not in ev
    d.api("GET", "/v1/status")
    assert not suppressed(d, "victim@dst.test")[0]


def test_token_without_send_record_suppresses_nobody(sluiced, receiver, verp_key):
    """A valid token whose send never got a 250 (so it has no send record)
    is in the hands of whoever saw our MAIL FROM: reports through it give
    events, but must not put the addresses they name on the list."""
    seen = []

    def mail_reply(addr):
        seen.append(addr)
        return None
    rx = receiver(mail_reply=mail_reply, rcpt_reply="451 4.7.1 try later")
    d = start(sluiced, rx, verp_key)
    d.send("news@src.test", "me@dst.test", "Subject: x\r\n\r\nhi\r\n")
    wait_until(lambda: any(a.startswith("bounce+") for a in seen), 20, what="VERP MAIL FROM")
    verp = [a for a in seen if a.startswith("bounce+")][0]
    code, resp = mail_report(d, verp, dsn(verp, "ceo@victim.test", "5.1.1"))
    assert code == 250, resp
    assert d.wait_event("bounce", recipient="ceo@victim.test")[0]["async"] is True
    body = arf(verp, "x").replace("To: <redacted>", "To: boss@victim.test")
    code, resp = mail_report(d, FBL, body)
    assert code == 250, resp
    d.wait_event("complaint")
    assert not suppressed(d, "ceo@victim.test")[0]
    assert not suppressed(d, "boss@victim.test")[0]
    assert not suppressed(d, "me@dst.test")[0]
    assert "event=report-unbound" in d.log_text()


def test_out_of_office_is_no_bounce(sluiced, receiver, verp_key):
    rx = receiver()
    d = start(sluiced, rx, verp_key)
    _, verp = deliver(d, rx, "away@dst.test", 1)
    code, resp = mail_report(d, verp, (
        "From: Away Person <away@dst.test>\r\n"
        "To: %s\r\n"
        "Subject: Automatic reply: November offers\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "\r\n"
        "I am out of the office until Monday.\r\n" % verp), sender="away@dst.test")
    assert code == 250, resp
    wait_until(lambda: "event=auto-reply" in d.log_text(), 10, what="auto-reply log line")
    assert not d.events("bounce") and not d.events("transient")
    assert not suppressed(d, "away@dst.test")[0]


@pytest.mark.parametrize("case", ["world-readable", "short", "missing", "no-key"])
def test_verp_config_errors(sluiced_bin, tmp_path, case):
    key = tmp_path / "verp.key"
    key.write_bytes(os.urandom(8 if case == "short" else 32))
    key.chmod(0o644 if case == "world-readable" else 0o600)
    if case == "missing":
        key.unlink()
    conf = tmp_path / "s.conf"
    lines = ["hostname t", "bounce-domain %s" % BOUNCE_DOMAIN]
    if case != "no-key":
        lines.append("verp-key %s" % key)
    conf.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sluiced_bin[0], "-n", "-c", str(conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    want = {
        "world-readable": "%s:3: verp-key: key %s: is world-readable" % (conf, key),
        "short": "%s:3: verp-key: key %s: 8 bytes" % (conf, key),
        "missing": "%s:3: verp-key: key %s: No such file" % (conf, key),
        "no-key": "%s:2: bounce-domain needs verp-key" % conf,
    }[case]
    assert want in out.stderr, out.stderr


def test_sluicectl_verp_keygen_and_check(sluiced, receiver, sluiced_bin, tmp_path):
    ctl = sluiced_bin[1]
    key = tmp_path / "new.key"
    out = subprocess.run([ctl, "verp", "keygen", str(key)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert key.stat().st_size == 32 and (key.stat().st_mode & 0o777) == 0o600
    # never over an existing key
    again = subprocess.run([ctl, "verp", "keygen", str(key)], capture_output=True, text=True,
                           timeout=30)
    assert again.returncode == 1 and key.stat().st_size == 32
    # the daemon takes it; check names the send of a VERP address
    rx = receiver()
    d = start(sluiced, rx, str(key))
    qid, verp = deliver(d, rx, "k@dst.test", 1)
    ok = subprocess.run([ctl, "-c", d.conf_path, "verp", "check", verp], capture_output=True,
                        text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "valid: queue id %s, recipient index 0" % qid in ok.stdout
    bad = verp[:-len("@" + BOUNCE_DOMAIN) - 1] + ("A" if verp[-len(BOUNCE_DOMAIN) - 2] != "A"
                                                   else "B") + "@" + BOUNCE_DOMAIN
    out = subprocess.run([ctl, "-c", d.conf_path, "verp", "check", bad], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and "forged" in out.stdout
