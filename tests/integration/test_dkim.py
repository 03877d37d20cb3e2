"""DKIM signing end to end: messages relayed through sluiced are verified
by dkimpy (an implementation independent of sluice's) with the keys
published on the test DNS server. Also `sluicectl dkim keygen|check`."""

import os
import re
import subprocess

import pytest

from conftest import route_conf
from peers import dkim_verify, make_dkim_key, scaled, wait_until

FROM = "sender@src.test"
TO = "rcpt@dst.test"


def msg(subject="dkim", body="hello\r\n", frm=FROM, extra=""):
    return ("From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <%s@src.test>\r\n"
            "MIME-Version: 1.0\r\n%s\r\n%s"
            % (frm, TO, subject, abs(hash(subject)), extra, body))


def dkim_block(domain, *sels, expiry=None):
    lines = ["dkim %s {" % domain]
    lines += ["    selector %s %s %s" % s for s in sels]
    if expiry:
        lines.append("    signature-expiry %s" % expiry)
    return "\n".join(lines) + "\n}\n"


def publish(dns_server, tmp_path, domain, selector, alg):
    key, txt = make_dkim_key(tmp_path / "keys" / domain, selector, alg)
    dns_server.add("%s._domainkey.%s" % (selector, domain), "TXT", txt)
    return (selector, alg, key)


def delivered(rx, n=1):
    return rx.wait_for(n, timeout=20)


def sig_count(data):
    return len(re.findall(rb"(?im)^DKIM-Signature:", data))


@pytest.fixture
def signer(tmp_path, dns_server, receiver, sluiced):
    """(daemon, receiver) for src.test signed with RSA-2048 s1 and Ed25519 e1."""
    rx = receiver()
    rsa = publish(dns_server, tmp_path, "src.test", "s1", "rsa")
    ed = publish(dns_server, tmp_path, "src.test", "e1", "ed25519")
    d = sluiced(route_conf(rx) + dkim_block("src.test", rsa, ed))
    return d, rx


@pytest.mark.parametrize("alg", ["rsa", "ed25519"])
def test_single_algorithm(tmp_path, dns_server, receiver, sluiced, alg):
    rx = receiver()
    sel = publish(dns_server, tmp_path, "src.test", "k1", alg)
    d = sluiced(route_conf(rx) + dkim_block("src.test", sel))
    d.send(FROM, TO, msg())
    data = delivered(rx)[0].data
    assert dkim_verify(data, dns_server) == [("src.test", "k1", True)]
    assert (b"a=rsa-sha256" if alg == "rsa" else b"a=ed25519-sha256") in data
    # relaxed/relaxed, the over-signed headers listed once more than present
    h = re.search(rb"[;\s]h=([^;]*);", re.sub(rb"\r\n[ \t]+", b" ", data)).group(1)
    names = [x.strip().lower() for x in h.split(b":")]
    assert names.count(b"from") == 2 and names.count(b"subject") == 2
    assert b"list-unsubscribe" in names and b"list-unsubscribe-post" in names
    assert b"c=relaxed/relaxed" in data


def test_dual_signed_and_negative_control(signer, dns_server):
    d, rx = signer
    d.send(FROM, TO, msg())
    data = delivered(rx)[0].data
    res = dkim_verify(data, dns_server)
    assert sorted(res) == [("src.test", "e1", True), ("src.test", "s1", True)]
    # flip one body byte: both fail
    head, body = data.split(b"\r\n\r\n", 1)
    bad = head + b"\r\n\r\n" + body.replace(b"hello", b"hellp", 1)
    assert [ok for _, _, ok in dkim_verify(bad, dns_server)] == [False, False]
    # an added From header: over-signing makes both fail
    assert [ok for _, _, ok in dkim_verify(b"From: x@evil.test\r\n" + data, dns_server)] \
        == [False, False]


def test_multi_domain_and_expiry(tmp_path, dns_server, receiver, sluiced):
    rx = receiver()
    a = publish(dns_server, tmp_path, "a.test", "sa", "rsa")
    b = publish(dns_server, tmp_path, "b.test", "sb", "ed25519")
    d = sluiced(route_conf(rx) + dkim_block("a.test", a) + dkim_block("b.test", b, expiry="7d"))
    d.send("x@a.test", TO, msg("to a", frm="x@a.test"))
    d.send("y@b.test", TO, msg("to b", frm="y@b.test"))
    d.send("z@c.test", TO, msg("unsigned", frm="z@c.test"))
    # wait for all three subjects (not for any three messages: a duplicate
    # delivery is the queue's business, tested elsewhere)
    wait_until(lambda: {m.header("Subject") for m in rx.messages} >= {"to a", "to b", "unsigned"},
               timeout=20)
    got = {m.header("Subject"): m.data for m in rx.messages}
    assert dkim_verify(got["to a"], dns_server) == [("a.test", "sa", True)]
    assert dkim_verify(got["to b"], dns_server) == [("b.test", "sb", True)]
    assert dkim_verify(got["unsigned"], dns_server) == []
    flat = re.sub(rb"\r\n[ \t]+", b" ", got["to b"])
    t = int(re.search(rb"\bt=(\d+)", flat).group(1))
    x = int(re.search(rb"\bx=(\d+)", flat).group(1))
    assert x - t == 7 * 86400
    assert not re.search(rb"\bx=\d+", re.sub(rb"\r\n[ \t]+", b" ", got["to a"]))


BODIES = {
    "8bit": "caf\u00e9 \u20ac 8bit body\r\n\u00fcml\u00e4ute\r\n",
    "trailing-space-and-blank-lines": "a  b\t \r\n\r\n  indented\r\n\r\n\r\n",
    "no-trailing-crlf": "no newline at the end",
    "dots": ".leading dot\r\n..two dots\r\n.\r\n...\r\nend\r\n",
    "empty": "",
    "long": ("x" * 70 + " y\r\n") * 2000,
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_bodies(signer, dns_server, name):
    d, rx = signer
    extra = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    d.send(FROM, TO, msg(name, BODIES[name], extra=extra))
    data = delivered(rx)[0].data
    assert [ok for _, _, ok in dkim_verify(data, dns_server)] == [True, True]
    if name == "dots":
        assert b"\r\n.leading dot\r\n..two dots\r\n.\r\n...\r\n" in data


def test_long_folded_headers(signer, dns_server):
    d, rx = signer
    refs = "\r\n ".join("<%d.%s@src.test>" % (i, "r" * 40) for i in range(40))
    extra = ("References: %s\r\nList-Unsubscribe: <mailto:u@src.test>,\r\n"
             "\t<https://src.test/u/%s>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
             % (refs, "q" * 300))
    subject = "a subject   with  odd   spacing that is long enough to need folding\r\n" \
              "\t\tover several\r\n   lines"
    d.send(FROM, TO, msg(subject, "body\r\n", extra=extra))
    data = delivered(rx)[0].data
    assert [ok for _, _, ok in dkim_verify(data, dns_server)] == [True, True]


def test_smtputf8(signer, dns_server):
    d, rx = signer
    body = "Gr\u00fc\u00dfe aus M\u00fcnchen\r\n"
    m = msg("caf\u00e9 \u2615", body).replace("<%s>" % TO, "<j\u00f6rg@dst.test>")
    s = d.smtp()
    try:
        s.ehlo()
        if not s.has_extn("smtputf8"):
            pytest.skip("listener does not offer SMTPUTF8")
        code, _ = s.mail(FROM, ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250
        assert s.rcpt("j\u00f6rg@dst.test")[0] in (250, 251)
        assert s.data(m.encode("utf-8"))[0] == 250
        s.quit()
    finally:
        s.close()
    data = delivered(rx)[0].data
    assert "caf\u00e9".encode() in data
    assert [ok for _, _, ok in dkim_verify(data, dns_server)] == [True, True]


def test_redelivery_after_4xx_signed_once(signer, dns_server):
    d, rx = signer
    calls = []

    def first_451(m):
        calls.append(m)
        return "451 4.3.0 try again later" if len(calls) == 1 else None

    rx.set(data_reply=first_451)
    d.send(FROM, TO, msg())
    data = delivered(rx)[0].data
    assert len(rx.transactions) >= 2
    assert sig_count(data) == 2
    assert [ok for _, _, ok in dkim_verify(data, dns_server)] == [True, True]
    # the same signatures on both attempts: signed once at injection
    assert rx.transactions[0].data == data


def test_redelivery_after_restart(signer, dns_server):
    d, rx = signer
    rx.set(data_reply="451 4.3.0 not now")
    d.send(FROM, TO, msg())
    wait_until(lambda: len(rx.transactions) >= 1, timeout=20)
    first = rx.transactions[0].data
    d.stop()
    rx.set(data_reply=None)
    d.start()
    data = delivered(rx)[0].data
    assert data == first
    assert sig_count(data) == 2
    assert [ok for _, _, ok in dkim_verify(data, dns_server)] == [True, True]


# ---- sluicectl dkim ----------------------------------------------------------------------
def ctl(sluicectl, *args, cwd=None):
    return subprocess.run([sluicectl] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=scaled(60), cwd=cwd)


def zone_txt(out):
    """The record text from "NAME. IN TXT ( "..." "..." )"."""
    m = re.search(r"IN TXT \((.*?)\)", out, re.S)
    assert m, out
    strings = re.findall(r'"([^"]*)"', m.group(1))
    assert all(len(s) <= 255 for s in strings)
    return "".join(strings)


@pytest.mark.parametrize("alg", ["rsa", "ed25519"])
def test_ctl_keygen_and_check(tmp_path, dns_server, sluiced_bin, alg):
    sluicectl = sluiced_bin[1]
    if not os.access(sluicectl, os.X_OK):
        pytest.skip("sluicectl not built")
    opt = ["--ed25519"] if alg == "ed25519" else ["--rsa", "2048"]
    p = ctl(sluicectl, "dkim", "keygen", "src.test", "k1", *opt, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    key = tmp_path / "src.test.k1.key"
    assert os.stat(key).st_mode & 0o777 == 0o600
    txt = zone_txt(p.stdout)
    assert txt.startswith("v=DKIM1; k=%s; p=" % alg)
    assert re.search(r"k1\._domainkey\.src\.test\. IN TXT", p.stdout)
    assert "dkim src.test { selector k1 %s %s }" % (alg, key) in p.stdout
    # refuses to overwrite
    again = ctl(sluicectl, "dkim", "keygen", "src.test", "k1", *opt, cwd=tmp_path)
    assert again.returncode != 0 and "exist" in again.stderr.lower()

    conf = tmp_path / "check.conf"
    conf.write_text("resolver 127.0.0.1:%d\n" % dns_server.port
                    + "dkim src.test {\n    selector k1 %s %s\n}\n" % (alg, key))
    # not published yet
    p = ctl(sluicectl, "-c", conf, "dkim", "check", "src.test", "k1")
    assert p.returncode == 1, p.stdout + p.stderr
    # published, as printed (split into 255-byte strings)
    dns_server.add("k1._domainkey.src.test", "TXT", txt)
    p = ctl(sluicectl, "-c", conf, "dkim", "check", "src.test", "k1")
    assert p.returncode == 0, p.stdout + p.stderr
    p = ctl(sluicectl, "-c", conf, "dkim", "check", "src.test", "k1", "--key", key)
    assert p.returncode == 0, p.stdout + p.stderr
    # another key under the same name: mismatch
    other, _ = make_dkim_key(tmp_path / "other", "k1", alg)
    p = ctl(sluicectl, "-c", conf, "dkim", "check", "src.test", "k1", "--key", other)
    assert p.returncode == 1, p.stdout + p.stderr
    # the key file is usable by other tools too: openssl reads it back
    pub = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
                         capture_output=True, check=True, timeout=60).stdout
    import base64
    p64 = base64.b64encode(pub if alg == "rsa" else pub[-32:]).decode()
    assert txt.endswith("p=" + p64)


def test_sighup_picks_up_rotated_key(tmp_path, dns_server, receiver, sluiced):
    """Key rotation: a new key file at the same path and a new selector are
    used after SIGHUP; messages signed before keep verifying with the old
    record, messages after verify with the new one."""
    rx = receiver()
    old = publish(dns_server, tmp_path, "src.test", "jan", "rsa")
    d = sluiced(route_conf(rx) + dkim_block("src.test", old))
    d.send(FROM, TO, msg(subject="before"))
    first = delivered(rx)[0].data
    assert dkim_verify(first, dns_server) == [("src.test", "jan", True)]

    new = publish(dns_server, tmp_path / "new", "src.test", "feb", "rsa")
    d.reload(route_conf(rx) + dkim_block("src.test", new))
    d.send(FROM, TO, msg(subject="after"))
    second = delivered(rx, 2)[1].data
    assert dkim_verify(second, dns_server) == [("src.test", "feb", True)]
    assert b"s=jan" not in second

    # a reload naming a missing key keeps the running config (and key)
    d.reload(route_conf(rx) + dkim_block("src.test", ("mar", "rsa", str(tmp_path / "nope.key"))))
    assert "nope.key" in d.log_text()
    d.send(FROM, TO, msg(subject="still feb"))
    third = delivered(rx, 3)[2].data
    assert dkim_verify(third, dns_server) == [("src.test", "feb", True)]
