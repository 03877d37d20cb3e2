"""The suppression list: a hard bounce puts the address on it and the next
injection to it is refused (SMTP) or reported (API); drop mode; scopes;
soft-bounce runs; the API (CRUD, paging), sluicectl, and a bulk import of a
million addresses that survives a restart. Assertions are on what the
receiver got and what the accounting log and the API say."""

import os
import smtplib
import subprocess
import time
import urllib.parse

import pytest

from conftest import BASE_CONF, FAST_RETRY, route_conf, scaled, wait_until

SOURCES = """\
source s1 { address 127.0.0.1 ehlo s1.test }
pool default { source s1 weight 1 }
pool bulk { source s1 weight 1 }
"""


def msg(frm="a@src.test", to="b@dst.test", extra=""):
    return "%sFrom: %s\r\nTo: %s\r\nSubject: t\r\n\r\nhello\r\n" % (extra, frm, to)


def q(addr):
    return urllib.parse.quote(addr, safe="@")


def entry(d, addr, scope=None):
    """The API's entries for addr (or one scope), or None on 404."""
    path = "/v1/suppression/" + q(addr) + ("?scope=" + q(scope) if scope else "")
    code, j = d.api("GET", path)
    if code == 404:
        assert j["error"]["code"] == "not_found"
        return None
    assert code == 200, j
    return j["entries"]


def wait_suppressed(d, addr, timeout=10):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        e = entry(d, addr)
        if e:
            return e
        time.sleep(0.05)
    raise AssertionError("%s never appeared on the suppression list\n%s"
                         % (addr, d.diagnostics(20)))


def rcpt_codes(d, sender, rcpts, data=None):
    """RCPT replies over one SMTP session; data (if any) is sent when at least
    one recipient was accepted. Returns ({rcpt: (code, text)}, data reply)."""
    s = d.smtp()
    out, dr = {}, None
    try:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        for r in rcpts:
            code, text = s.rcpt(r)
            out[r] = (code, text.decode())
        if data is not None and any(c == 250 for c, _ in out.values()):
            dr = s.data(data.encode())
        s.quit()
    finally:
        s.close()
    return out, dr


# ---- hard bounce -> suppressed -> refused ------------------------------------

def test_hard_bounce_suppresses_next_injection(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 <%s>: no such user" % a
                  if a.startswith("gone") else None)
    d = sluiced(route_conf(rx))
    d.send("a@src.test", ["gone@dst.test"], msg(to="gone@dst.test"))
    b = d.wait_event("bounce", recipient="gone@dst.test")[0]
    assert b["ses_type"] == "Permanent" and b["category"] == "bad-mailbox"
    e = wait_suppressed(d, "gone@dst.test")
    assert [x["reason"] for x in e] == ["hard-bounce"] and e[0]["scope"] == "global"
    assert e[0]["source"] == "bounce %s bad-mailbox" % b["id"]
    # the domain's case does not matter
    assert entry(d, "gone@DST.Test")[0]["address"] == "gone@dst.test"

    # SMTP: refused at RCPT with the reason; the other recipient goes through
    codes, dr = rcpt_codes(d, "a@src.test", ["gone@DST.test", "ok@dst.test"],
                           msg(to="ok@dst.test"))
    assert codes["gone@DST.test"][0] == 550
    assert codes["gone@DST.test"][1].startswith("5.7.1 <gone@DST.test>: recipient suppressed")
    assert "hard-bounce" in codes["gone@DST.test"][1]
    assert codes["ok@dst.test"][0] == 250 and dr[0] == 250
    ev = d.wait_event("suppressed", recipient="gone@DST.test")[0]
    assert ev["action"] == "rejected" and ev["reason"] == "hard-bounce"
    assert ev["ses_type"] == "Permanent" and ev["ses_subtype"] == "Suppressed"
    assert "id" not in ev

    # the API: per-recipient status, the suppressed one is not sent
    code, j = d.api("POST", "/v1/messages", {"from": "a@src.test",
                                            "to": ["gone@dst.test", "ok2@dst.test"],
                                            "subject": "s", "text": "t"})
    assert code == 202, j
    st = {r["address"]: r for r in j["recipients"]}
    assert st["ok2@dst.test"]["status"] == "queued"
    assert st["gone@dst.test"]["status"] == "suppressed"
    assert st["gone@dst.test"]["reason"] == "hard-bounce"
    assert st["gone@dst.test"]["scope"] == "global"
    ev = d.wait_event("suppressed", action="dropped", recipient="gone@dst.test")[0]
    assert ev["id"] == j["id"]
    d.wait_event("delivery", recipient="ok2@dst.test")
    # gone@ is never tried again (the receiver also got the DSN to a@src.test)
    rx.wait_for(3)
    got = [r for m in rx.messages for r in m.rcpt_tos if r.endswith("@dst.test")]
    assert sorted(got) == ["ok2@dst.test", "ok@dst.test"]
    assert len(d.events("bounce")) == 1

    # every recipient suppressed: 202, nothing queued
    code, j = d.api("POST", "/v1/messages", {"from": "a@src.test", "to": ["gone@dst.test"],
                                            "subject": "s", "text": "t"})
    assert code == 202 and j["recipients"][0]["status"] == "suppressed"
    assert "not queued" in j["reply"]


def test_content_rejection_and_operator_bounce_do_not_suppress(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "554 5.7.1 message content rejected as spam"
                  if a.startswith("spam") else None)
    d = sluiced(route_conf(rx))
    d.send("a@src.test", ["spam@dst.test"], msg())
    b = d.wait_event("bounce", recipient="spam@dst.test")[0]
    assert b["ses_type"] == "Transient"
    # a marker written after the bounce: when it is on the list, the store
    # has committed whatever the bounce would have written before it
    code, _ = d.api("PUT", "/v1/suppression/marker@dst.test", {"reason": "manual"})
    assert code == 200
    assert entry(d, "spam@dst.test") is None


@pytest.mark.parametrize("reply", [
    "550 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using "
    "zen.spamhaus.org; https://www.spamhaus.org/query/ip/127.0.0.1",
    "550 5.7.606 Access denied, banned sending IP [127.0.0.1]. To request removal from "
    "this list please visit https://sender.office.com/",
    "550 5.7.1 Sender address rejected: Access denied",
    "553 5.7.1 <a@src.test>: Sender address rejected: not owned by user",
])
def test_blocks_of_the_sending_ip_do_not_suppress(sluiced, receiver, reply):
    """A Permanent 5xx that is about our IP, not the address, must not put a
    good recipient on the list (it would suppress a whole provider's users
    one by one during a block)."""
    rx = receiver(rcpt_reply=lambda a: reply if a.startswith("good") else None)
    d = sluiced(route_conf(rx))
    d.send("a@src.test", ["good@dst.test"], msg())
    b = d.wait_event("bounce", recipient="good@dst.test")[0]
    assert b["category"] in ("policy-related", "spam-related", "invalid-sender"), b
    code, _ = d.api("PUT", "/v1/suppression/marker@dst.test", {"reason": "manual"})
    assert code == 200
    assert entry(d, "good@dst.test") is None


# ---- drop mode -----------------------------------------------------------------------

DROP_CONF = """\
hostname mta.test
workers 2
listener 127.0.0.1:{port} {
    relay-from 127.0.0.0/8
    suppressed-recipients drop
}
"""


def test_drop_mode(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx, base=DROP_CONF))
    code, j = d.api("PUT", "/v1/suppression/unsub@dst.test", {"reason": "unsubscribe"})
    assert code == 200 and j["reason"] == "unsubscribe"
    codes, dr = rcpt_codes(d, "a@src.test", ["unsub@dst.test", "ok@dst.test"], msg())
    assert codes["unsub@dst.test"][0] == 250 and codes["ok@dst.test"][0] == 250
    assert dr[0] == 250
    qid = dr[1].decode().split("queued as ")[1].split()[0]
    ev = d.wait_event("suppressed", recipient="unsub@dst.test")[0]
    assert ev["action"] == "dropped" and ev["id"] == qid and ev["reason"] == "unsubscribe"
    rec = d.wait_event("reception", id=qid)[0]
    assert rec["recipients"] == ["ok@dst.test"]
    # only suppressed recipients: accepted, never queued
    codes, dr = rcpt_codes(d, "a@src.test", ["unsub@dst.test"], msg())
    assert dr[0] == 250 and b"not queued" in dr[1]
    d.wait_event("suppressed", n=2, recipient="unsub@dst.test")
    d.send("a@src.test", ["last@dst.test"], msg())
    rx.wait_for(2)
    d.wait_event("delivery", recipient="last@dst.test")
    got = sorted(r for m in rx.messages for r in m.rcpt_tos)
    assert got == ["last@dst.test", "ok@dst.test"]


# ---- scopes ----------------------------------------------------------------------------

def test_scopes(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx, base=BASE_CONF + SOURCES))
    for addr, scope in (("dom@dst.test", "domain:Shop.test"),
                        ("brand@dst.test", "domain:brand.test"),
                        ("pool@dst.test", "pool:bulk")):
        code, j = d.api("PUT", "/v1/suppression/" + addr, {"reason": "unsubscribe", "scope": scope})
        assert code == 200, j
        assert j["scope"] == scope.replace("Shop", "shop")
    # domain scope: the envelope sender's domain, at RCPT
    codes, _ = rcpt_codes(d, "news@shop.test", ["dom@dst.test"])
    assert codes["dom@dst.test"][0] == 550
    codes, dr = rcpt_codes(d, "news@other.test", ["dom@dst.test"], msg(frm="news@other.test"))
    assert codes["dom@dst.test"][0] == 250 and dr[0] == 250
    d.wait_event("delivery", recipient="dom@dst.test")

    # domain scope on the From domain (an ESP's own envelope): left out at DATA
    codes, dr = rcpt_codes(d, "bounces@esp.test", ["brand@dst.test", "x@dst.test"],
                           msg(frm="News <news@Brand.test>"))
    assert dr[0] == 250
    ev = d.wait_event("suppressed", recipient="brand@dst.test")[0]
    assert ev["action"] == "dropped" and ev["scope"] == "domain:brand.test"

    # pool scope: the X-Sluice-Pool header is known after DATA
    codes, dr = rcpt_codes(d, "a@src.test", ["pool@dst.test", "y@dst.test"],
                           msg(extra="X-Sluice-Pool: bulk\r\n"))
    assert codes["pool@dst.test"][0] == 250 and dr[0] == 250
    ev = d.wait_event("suppressed", recipient="pool@dst.test")[0]
    assert ev["scope"] == "pool:bulk" and ev["pool"] == "bulk"
    # ... and the API's "pool"
    code, j = d.api("POST", "/v1/messages", {"from": "a@src.test", "pool": "bulk",
                                            "to": ["pool@dst.test", "z@dst.test"],
                                            "subject": "s", "text": "t"})
    st = {r["address"]: r["status"] for r in j["recipients"]}
    assert st == {"pool@dst.test": "suppressed", "z@dst.test": "queued"}
    # another pool: delivered
    d.send("a@src.test", ["pool@dst.test"], msg())
    d.wait_event("delivery", recipient="pool@dst.test")
    for r in ("x@dst.test", "y@dst.test", "z@dst.test"):
        d.wait_event("delivery", recipient=r)
    got = [r for m in rx.messages for r in m.rcpt_tos]
    assert "brand@dst.test" not in got and got.count("pool@dst.test") == 1


# ---- soft bounces ----------------------------------------------------------------------

def test_soft_bounce_runs(sluiced, receiver):
    full = "552 5.2.2 <%s>: mailbox full"
    rx = receiver(rcpt_reply=lambda a: full % a if a.startswith("full") else None)
    d = sluiced(route_conf(rx) + "suppress-soft-bounces 2 1d\n")
    # one mailbox-full bounce, a delivery, another: the run starts again
    d.send("a@src.test", ["full1@dst.test"], msg())
    d.wait_event("bounce", recipient="full1@dst.test")
    rx.set(rcpt_reply=None)
    d.send("a@src.test", ["full1@dst.test"], msg())
    d.wait_event("delivery", recipient="full1@dst.test")
    rx.set(rcpt_reply=lambda a: full % a if a.startswith("full") else None)
    d.send("a@src.test", ["full1@dst.test"], msg())
    d.wait_event("bounce", n=2, recipient="full1@dst.test")
    # two in a row: suppressed
    d.send("a@src.test", ["full2@dst.test"], msg())
    d.wait_event("bounce", recipient="full2@dst.test")
    d.send("a@src.test", ["full2@dst.test"], msg())
    d.wait_event("bounce", n=2, recipient="full2@dst.test")
    e = wait_suppressed(d, "full2@dst.test")
    assert e[0]["reason"] == "soft-bounces"
    assert entry(d, "full1@dst.test") is None


def test_expiry_counts_as_soft_bounce(sluiced, receiver):
    rx = receiver(rcpt_reply="451 4.3.0 try later")
    conf = BASE_CONF + ("domain * { route [127.0.0.1]:%d retry-after 1s bounce-after 2s }\n"
                        "suppress-soft-bounces 1 1d\n" % rx.port)
    d = sluiced(conf)
    d.send("a@src.test", ["slow@dst.test"], msg())
    d.wait_event("expired", recipient="slow@dst.test", timeout=20)
    e = wait_suppressed(d, "slow@dst.test")
    assert e[0]["reason"] == "soft-bounces"
    assert e[0]["source"].startswith("expired ")


# ---- API ----------------------------------------------------------------------------------

def test_api_crud_and_paging(sluiced, receiver):
    d = sluiced(route_conf(receiver()))
    assert d.api("GET", "/v1/suppression/nobody@dst.test")[0] == 404
    assert d.api("DELETE", "/v1/suppression/nobody@dst.test")[0] == 404
    code, j = d.api("PUT", "/v1/suppression/not-an-address", {})
    assert code == 400 and j["error"]["code"] == "bad_request"
    code, j = d.api("PUT", "/v1/suppression/a@dst.test", {"reason": "angry"})
    assert code == 400 and "angry" in j["error"]["message"]
    code, j = d.api("PUT", "/v1/suppression/a@dst.test", {"scope": "site:x"})
    assert code == 400
    code, j = d.api("PUT", "/v1/suppression/a@dst.test", "")
    assert code == 200 and j["reason"] == "manual" and j["source"] == "api"
    code, j = d.api("PUT", "/v1/suppression/a@dst.test",
                    {"reason": "complaint", "scope": "pool:default", "source": "fbl"})
    assert code == 200 and j["scope"] == "pool:default"
    e = entry(d, "a@dst.test")
    assert sorted((x["scope"], x["reason"]) for x in e) == \
        [("global", "manual"), ("pool:default", "complaint")]
    assert entry(d, "a@dst.test", scope="pool:default")[0]["source"] == "fbl"
    assert entry(d, "a@dst.test", scope="domain:x.test") is None
    code, j = d.api("DELETE", "/v1/suppression/a@dst.test?scope=pool:default")
    assert code == 200 and j["removed"] == ["pool:default"]
    code, j = d.api("DELETE", "/v1/suppression/a@dst.test")
    assert code == 200 and j["removed"] == ["global"]
    assert entry(d, "a@dst.test") is None

    # paging: 25 entries, 10 a page, in time order
    for i in range(25):
        reason = "complaint" if i % 5 == 0 else "unsubscribe"
        assert d.api("PUT", "/v1/suppression/p%02d@dst.test" % i, {"reason": reason})[0] == 200
    seen, cursor, pages = [], None, 0
    while True:
        path = "/v1/suppression?limit=10" + ("&cursor=" + cursor if cursor else "")
        code, j = d.api("GET", path)
        assert code == 200 and j["total"] == 25
        seen += [x["address"] for x in j["entries"]]
        pages += 1
        cursor = j["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p%02d@dst.test" % i for i in range(25)] and pages == 3
    code, j = d.api("GET", "/v1/suppression?reason=complaint")
    assert [x["address"] for x in j["entries"]] == ["p%02d@dst.test" % i for i in range(0, 25, 5)]
    # since: from p10's time on (entries added in the same millisecond come too)
    code, every = d.api("GET", "/v1/suppression?limit=100")
    t = [x["time"] for x in every["entries"] if x["address"] == "p10@dst.test"][0]
    code, j = d.api("GET", "/v1/suppression?since=" + q(t))
    want = [x["address"] for x in every["entries"] if x["time"] >= t]
    assert [x["address"] for x in j["entries"]] == want and "p10@dst.test" in want
    assert "p00@dst.test" not in want or every["entries"][0]["time"] == t
    code, j = d.api("GET", "/v1/suppression?since=1d&scope=global&limit=5")
    assert j["count"] == 5 and j["next_cursor"]
    code, j = d.api("GET", "/v1/suppression?scope=pool:other")
    assert j["count"] == 0 and j["next_cursor"] is None
    for bad in ("reason=x", "since=yesterday", "cursor=zz", "limit=0", "scope=nope"):
        code, j = d.api("GET", "/v1/suppression?" + bad)
        assert code == 400, bad

    # import errors are reported by line; a bad media type is refused
    body = "address,reason\nok1@dst.test,complaint\nbroken\nok2@dst.test,bogus\n\nok3@dst.test\n"
    code, j = d.api("POST", "/v1/suppression/import", body, {"Content-Type": "text/csv"})
    assert code == 200
    assert (j["imported"], j["invalid"], j["skipped"]) == (2, 2, 2)
    assert [e["line"] for e in j["errors"]] == [3, 4]
    assert "bogus" in j["errors"][1]["message"]
    code, j = d.api("POST", "/v1/suppression/import?reason=spam-trap&scope=domain:t.test",
                    '{"address":"n1@dst.test"}\n{"email":"n2@dst.test","reason":"complaint"}\n'
                    '{"address":5}\n',
                    {"Content-Type": "application/x-ndjson"})
    assert (j["imported"], j["invalid"]) == (2, 1)
    assert entry(d, "n1@dst.test")[0]["reason"] == "spam-trap"
    assert entry(d, "n2@dst.test")[0]["scope"] == "domain:t.test"
    code, j = d.api("POST", "/v1/suppression/import", "x", {"Content-Type": "image/png"})
    assert code == 415


# ---- sluicectl -------------------------------------------------------------------------------

def test_cli(sluiced, receiver, tmp_path):
    d = sluiced(route_conf(receiver()))
    out = d.ctl("suppression", "add", "Cli@Dst.TEST", "--reason", "unsubscribe",
                "--scope", "domain:shop.test")
    assert "suppressed Cli@dst.test (unsubscribe, domain:shop.test)" in out
    out = d.ctl("suppression", "lookup", "Cli@dst.test")
    assert "Cli@dst.test" in out and "domain:shop.test" in out
    j = d.ctl("suppression", "lookup", "Cli@dst.test", json=True)
    assert j["entries"][0]["reason"] == "unsubscribe"
    d.ctl("suppression", "lookup", "none@dst.test", check=False)
    assert d.last_ctl.returncode == 1 and "not suppressed" in d.last_ctl.stdout
    d.ctl("suppression", "add", "two@dst.test")
    j = d.ctl("suppression", "list", "--reason", "manual", json=True)
    assert [e["address"] for e in j["entries"]] == ["two@dst.test"]
    out = d.ctl("suppression", "list")
    assert out.splitlines()[0].split()[:3] == ["ADDRESS", "REASON", "SCOPE"]
    assert len(out.splitlines()) == 3
    d.ctl("suppression", "remove", "Cli@dst.test")
    d.ctl("suppression", "remove", "Cli@dst.test", check=False)
    assert d.last_ctl.returncode == 1
    d.ctl("suppression", "add", "x@dst.test", "--reason", "nope", check=False)
    assert d.last_ctl.returncode == 1 and "nope" in d.last_ctl.stderr
    d.ctl("suppression", "frobnicate", check=False)
    assert d.last_ctl.returncode == 1

    # import with a bad line: counted, named by line, exit 1
    f = tmp_path / "list.csv"
    f.write_text("email,reason\nc1@dst.test,complaint\nnot-valid\nc2@dst.test,\n")
    d.ctl("suppression", "import", str(f), check=False)
    assert d.last_ctl.returncode == 1
    assert "imported 2 addresses (1 invalid" in d.last_ctl.stdout
    assert "line 3:" in d.last_ctl.stderr

    # export round trip: CSV and NDJSON, through a second daemon
    csv_out, nd_out = tmp_path / "out.csv", tmp_path / "out.ndjson"
    assert "exported 3 entries" in d.ctl("suppression", "export", str(csv_out))
    d.ctl("suppression", "export", "--format", "ndjson", str(nd_out))
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "address,reason,scope,time,source" and len(lines) == 4
    assert len(nd_out.read_text().splitlines()) == 3
    d2 = sluiced(route_conf(receiver()))
    d2.ctl("suppression", "import", str(csv_out))
    d2.ctl("suppression", "export", str(tmp_path / "again.csv"))
    assert (tmp_path / "again.csv").read_text() == csv_out.read_text()
    d3 = sluiced(route_conf(receiver()))
    d3.ctl("suppression", "import", str(nd_out))
    assert d3.ctl("suppression", "export", "-") == csv_out.read_text()


# ---- a million addresses, and a restart ---------------------------------------------------

def test_import_million_survives_restart(sluiced, receiver, tmp_path):
    rx = receiver()
    d = sluiced(route_conf(rx))
    n = 1000000
    path = tmp_path / "million.csv"
    with open(path, "w") as f:
        f.write("address,reason,scope\n")
        for i in range(n):
            f.write("u%07d@list%03d.test,%s,%s\n" % (
                i, i % 1000, "hard-bounce" if i % 3 else "unsubscribe",
                "pool:bulk" if i % 10 == 7 else ""))
    out = d.ctl("suppression", "import", str(path), timeout=600)
    assert "imported 1000000 addresses (0 invalid, 1 lines skipped)" in out
    os.unlink(path)

    def check():
        code, j = d.api("GET", "/v1/suppression?limit=1")
        assert j["total"] == n
        for i in (0, 1, 7, 999999, 123456, 500003):
            e = entry(d, "u%07d@LIST%03d.test" % (i, i % 1000))
            assert e is not None, i
            assert e[0]["reason"] == ("hard-bounce" if i % 3 else "unsubscribe")
            assert e[0]["scope"] == ("pool:bulk" if i % 10 == 7 else "global")
        for a in ("u1000000@list000.test", "u0000001@list002.test", "x@list001.test"):
            assert entry(d, a) is None, a
        # injection checks the list too
        codes, _ = rcpt_codes(d, "a@src.test", ["u0000004@list004.test", "free@list004.test"])
        assert codes["u0000004@list004.test"][0] == 550
        assert codes["free@list004.test"][0] == 250

    check()
    d.restart()
    check()
    # the store on disk holds them (not just memory)
    size = sum(os.path.getsize(os.path.join(d.store, f)) for f in os.listdir(d.store))
    assert size > n * 40
