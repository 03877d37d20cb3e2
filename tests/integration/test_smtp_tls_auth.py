"""STARTTLS, AUTH and relay control on the SMTP listener (smtp_server.c,
tls.c, auth.c): TLS verified against the test CA, AUTH PLAIN/LOGIN only
under TLS, credentials from a PBKDF2 users file, never an open relay.
"""

import base64
import hashlib
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import warnings

import pytest

from conftest import FAST_RETRY
from peers import scaled, wait_until
from test_smtp_inject import MSG, Raw

TLS_CONF = """\
hostname mta.test
workers 2
log-level debug
listener 127.0.0.1:{port} {
    relay-from 127.0.0.1/32
    tls-certificate {cert}
    tls-key {key}
    auth %s
    auth-users {users}
}
domain * { route [127.0.0.1]:{rx} %s }
"""

USERS = {"alice": "correct horse", "bob": "battery staple"}


def hash_line(user, password, iterations=1000):
    """A users-file line as `sluicectl user add` makes it (auth.c format)."""
    salt = os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "%s:$pbkdf2-sha256$%d$%s$%s\n" % (
        user, iterations, base64.b64encode(salt).decode(), base64.b64encode(key).decode())


def users_file(tmp_path, lines=None, mode=0o600):
    path = tmp_path / "users"
    text = lines if lines is not None else \
        "# test users\n\n" + "".join(hash_line(u, p) for u, p in USERS.items())
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def start(sluiced, receiver, test_ca, tmp_path, auth="optional", users=None):
    rx = receiver()
    d = sluiced(TLS_CONF % (auth, FAST_RETRY), rx=rx.port, cert=test_ca.cert,
                key=test_ca.key, users=users or users_file(tmp_path))
    return d, rx


def client_ctx(test_ca):
    ctx = ssl.create_default_context(cafile=test_ca.ca_cert)
    ctx.check_hostname = True
    return ctx


def tls_client(d, test_ca, source=None):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                     timeout=scaled(30), source_address=source)
    s.ehlo()
    s.starttls(context=client_ctx(test_ca))
    s.ehlo()
    return s


def test_starttls_verified_chain(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=scaled(30))
    s.ehlo()
    assert s.has_extn("starttls")
    assert not s.has_extn("auth")               # never before TLS
    code, _ = s.starttls(context=client_ctx(test_ca))   # verifies chain and 127.0.0.1
    assert code == 220
    assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
    # RFC 3207: the client must EHLO again; the server forgot the old one
    assert s.docmd("MAIL FROM:<a@src.test>")[0] == 503
    s.ehlo()
    assert not s.has_extn("starttls")
    assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    assert s.docmd("STARTTLS")[0] == 503
    s.sendmail("a@src.test", ["b@dst.test"], MSG)
    s.quit()
    got = rx.wait_for(1)[0]
    rcv = " ".join(str(got.msg["Received"]).split())
    assert "with ESMTPS id" in rcv and "(using TLSv1." in rcv, rcv
    assert re.search(r"event=tls sid=\S+ ip=127\.0\.0\.1 tls=\"TLSv1\.[23] ", d.log_text())


def test_certificate_fails_for_wrong_ca(sluiced, receiver, test_ca, tmp_path):
    """The chain really is checked: a client trusting another CA refuses it."""
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    other = test_ca.make_cert(["other.test"], self_signed=True)
    ctx = ssl.create_default_context(cafile=other.cert)
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=scaled(30))
    s.ehlo()
    with pytest.raises(ssl.SSLCertVerificationError):
        s.starttls(context=ctx)
    s.close()


def test_old_tls_versions_refused(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=scaled(30))
    s.ehlo()
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        s.starttls(context=ctx)
    s.close()
    # the server saw a TLS 1.1 hello and refused the version (not just garbage)
    wait_until(lambda: re.search(r"event=tls-failed .*unsupported protocol", d.log_text()), 5,
               what="tls-failed: unsupported protocol")


def test_starttls_pipelined_plaintext_is_dropped(sluiced, receiver, test_ca, tmp_path):
    """Commands pipelined after STARTTLS in the clear are thrown away
    (CVE-2011-0411 style injection)."""
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    c = Raw(d.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@src.test>\r\n")
    code, lines = c.reply()
    assert code == 220 and lines[0].startswith("2.0.0")
    assert c.buf == b""
    tls = client_ctx(test_ca).wrap_socket(c.sock, server_hostname="127.0.0.1")
    c.sock = tls
    code, lines = c.cmd("EHLO client.test")
    assert code == 250 and "AUTH PLAIN LOGIN" in lines   # the reply to EHLO, not to MAIL
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 250        # so no transaction was open
    assert "event=starttls-pipelined" in d.log_text()


def test_auth_refused_before_tls(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    c = Raw(d.port)
    assert c.reply()[0] == 220
    code, lines = c.cmd("EHLO client.test")
    assert not [l for l in lines if l.startswith("AUTH")]
    plain = base64.b64encode(b"\0alice\0correct horse").decode()
    code, lines = c.cmd("AUTH PLAIN " + plain)
    assert code == 538 and lines[0].startswith("5.7.11"), lines
    code, lines = c.cmd("AUTH LOGIN")
    assert code == 538


def test_auth_plain(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    s = tls_client(d, test_ca)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login("alice", "wrong password")
    assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("mallory", "correct horse")       # unknown user: same answer
    code, text = s.login("alice", "correct horse")
    assert code == 235 and text.startswith(b"2.7.0")
    assert s.docmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0battery staple").decode())[0] == 503
    s.quit()
    log = d.log_text()
    assert 'user="alice" result=failed' in log and 'user="alice" result=ok' in log
    assert "correct horse" not in log


def test_auth_login_and_cancel(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    s = tls_client(d, test_ca)
    # cancelled exchange
    code, text = s.docmd("AUTH LOGIN")
    assert (code, text) == (334, b"VXNlcm5hbWU6")
    code, text = s.docmd("*")
    assert code == 501 and text.startswith(b"5.7.0")
    # bad base64
    assert s.docmd("AUTH LOGIN")[0] == 334
    assert s.docmd("not base64!")[0] == 501
    # PLAIN without an initial response, authzid must match
    assert s.docmd("AUTH PLAIN")[0] == 334
    assert s.docmd(base64.b64encode(b"carol\0bob\0battery staple").decode())[0] == 501
    # LOGIN with an initial response
    code, text = s.docmd("AUTH LOGIN " + base64.b64encode(b"bob").decode())
    assert (code, text) == (334, b"UGFzc3dvcmQ6")
    code, text = s.docmd(base64.b64encode(b"battery staple").decode())
    assert code == 235
    s.quit()


def test_relay_denied_unless_authenticated(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    src = ("127.0.0.9", 0)
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test",
                     timeout=scaled(30), source_address=src)
    s.ehlo()
    assert s.mail("open@src.test")[0] == 250
    code, text = s.rcpt("victim@dst.test")
    assert (code, text) == (550, b"5.7.1 Relaying denied")
    assert s.docmd("DATA")[0] == 554
    s.quit()
    # TLS alone does not make a relay
    s = tls_client(d, test_ca, source=src)
    s.mail("open@src.test")
    assert s.rcpt("victim@dst.test")[0] == 550
    s.rset()
    # AUTH does
    s.login("bob", "battery staple")
    s.sendmail("bob@src.test", ["friend@dst.test"], MSG)
    s.quit()
    # and 127.0.0.1 is in relay-from
    d.send("local@src.test", "x@dst.test", MSG)
    wait_until(lambda: len(rx.messages) >= 2, 10, what="two messages")
    froms = sorted(m.mail_from for m in rx.messages)
    assert froms == ["bob@src.test", "local@src.test"]
    authed = [m for m in rx.messages if m.mail_from == "bob@src.test"][0]
    rcv = " ".join(str(authed.msg["Received"]).split())
    assert "([127.0.0.9])" in rcv and "with ESMTPSA id" in rcv, rcv
    assert "event=relay-denied" in d.log_text()


def test_auth_required(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path, auth="required")
    s = tls_client(d, test_ca)
    code, text = s.mail("a@src.test")
    assert (code, text) == (530, b"5.7.0 Authentication required")
    s.login("alice", "correct horse")
    s.sendmail("alice@src.test", ["b@dst.test"], MSG)
    s.quit()
    assert rx.wait_for(1)[0].mail_from == "alice@src.test"
    # without TLS there is no way in at all
    c = Raw(d.port)
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<a@src.test>")[0] == 530


@pytest.mark.parametrize("content,why", [
    ("alice:correct horse\n", "plaintext password refused"),
    ("alice:{SSHA}abcdef\n", "unsupported password scheme"),
    ("alice:$pbkdf2-sha256$10$AAAAAAAAAAA=$AAAA\n", "bad iteration count"),
    ("no colon here\n", "want user:hash"),
])
def test_bad_users_file_refused_at_start(sluiced, receiver, test_ca, tmp_path, content, why):
    good = hash_line("bob", "x")
    path = users_file(tmp_path, "# users\n" + good + content)
    rx = receiver()
    d = sluiced(TLS_CONF % ("optional", FAST_RETRY), start=False, rx=rx.port,
                cert=test_ca.cert, key=test_ca.key, users=path)
    d.start(wait=False)
    code = d.proc.wait(scaled(10))
    assert code != 0
    text = d.stderr_text() + d.log_text()
    assert "%s:3: " % path in text and why in text, text[-2000:]


def test_world_readable_users_file_refused(sluiced, receiver, test_ca, tmp_path):
    path = users_file(tmp_path, mode=0o644)
    rx = receiver()
    d = sluiced(TLS_CONF % ("optional", FAST_RETRY), start=False, rx=rx.port,
                cert=test_ca.cert, key=test_ca.key, users=path)
    d.start(wait=False)
    assert d.proc.wait(scaled(10)) != 0
    assert "readable by other users" in d.stderr_text() + d.log_text()


def test_swaks_tls_auth(sluiced, receiver, test_ca, tmp_path):
    if not shutil.which("swaks"):
        pytest.skip("swaks not installed")
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.port),
                        "--local-interface", "127.0.0.9", "--tls", "--tls-verify",
                        "--tls-ca-path", test_ca.ca_cert, "--auth", "PLAIN",
                        "--auth-user", "alice", "--auth-password", "correct horse",
                        "--from", "sw@src.test", "--to", "b@dst.test", "--helo", "swaks.test"],
                       capture_output=True, text=True, timeout=scaled(30))
    assert p.returncode == 0, p.stdout + p.stderr
    got = rx.wait_for(1)[0]
    assert got.mail_from == "sw@src.test"
    assert "with ESMTPSA id" in " ".join(str(got.msg["Received"]).split())


def test_reload_applies_new_users_and_keeps_old_on_error(sluiced, receiver, test_ca, tmp_path):
    d, rx = start(sluiced, receiver, test_ca, tmp_path)
    path = str(tmp_path / "users")
    with open(path, "w") as f:
        f.write(hash_line("carol", "new secret"))
    d.reload()
    wait_until(lambda: "event=reloaded" in d.log_text(), 5, what="reload")
    s = tls_client(d, test_ca)
    assert s.login("carol", "new secret")[0] == 235
    s.quit()
    s = tls_client(d, test_ca)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("alice", "correct horse")
    s.close()
    # a broken users file on reload: logged, the running credentials stay
    with open(path, "w") as f:
        f.write("carol:plaintext\n")
    n = d.log_text().count("event=reload")
    d.reload()
    wait_until(lambda: d.log_text().count("event=reload") > n, 5, what="second reload")
    wait_until(lambda: "event=reload-listeners-failed" in d.log_text(), 5, what="reload error")
    assert "%s:1: " % path in d.log_text()
    s = tls_client(d, test_ca)
    assert s.login("carol", "new secret")[0] == 235
    s.quit()


def test_sluicectl_user_hash_makes_working_credentials(sluiced, sluiced_bin, receiver, test_ca, tmp_path):
    """The documented way to make an auth-users line: sluicectl user hash."""
    import subprocess
    out = subprocess.run([sluiced_bin[1], "user", "hash", "carol"], input="s3cret pass\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = out.stdout
    assert line.startswith("carol:$pbkdf2-sha256$") and "s3cret" not in line
    d, rx = start(sluiced, receiver, test_ca, tmp_path, users=users_file(tmp_path, line))
    s = tls_client(d, test_ca)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("carol", "s3cret")
    assert s.login("carol", "s3cret pass")[0] == 235
    s.quit()
    bad = subprocess.run([sluiced_bin[1], "user", "hash", "a:b"], input="x\n",
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "':'" in bad.stderr
