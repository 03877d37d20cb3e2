"""The control API (HTTP/JSON on the Unix socket) and sluicectl, against a
real sluiced and real SMTP receivers. What a site did is asserted on what
the receiver got, not on what sluiced says."""

import email
import email.policy
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import route_conf
from peers import scaled, wait_until


# ---- helpers ----------------------------------------------------------------------

def api_ok(d, method, path, body=None, status=200):
    code, j = d.api(method, path, body)
    assert code == status, "%s %s -> %d %r" % (method, path, code, j)
    return j


def inject(d, to, subject="test", text="hello\n", sender="sender@src.test", **extra):
    """POST /v1/messages (structured); returns the queue id."""
    body = dict(extra, **{"from": sender, "to": to, "subject": subject, "text": text})
    j = api_ok(d, "POST", "/v1/messages", body, status=202)
    assert re.fullmatch(r"[A-Za-z0-9]+", j["id"]), j
    return j["id"]


def site_names(d):
    return [s["name"] for s in api_ok(d, "GET", "/v1/sites")["sites"]]


def route_site(d):
    """Name of the static-route site, once mail was routed to it."""
    def find():
        for s in api_ok(d, "GET", "/v1/sites")["sites"]:
            if s.get("route"):
                return s["name"]
        return None
    return wait_until(find, 10, what="the route site to appear in GET /v1/sites")


def site(d, name):
    return api_ok(d, "GET", "/v1/sites/" + name)


def wait_queued(d, name, n):
    return wait_until(lambda: site(d, name)["queued"] >= n, 10,
                      what="%d recipient(s) queued at %s" % (n, name))


def conf_line(d, needle):
    """1-based line number of the first config line containing needle."""
    for i, line in enumerate(d.conf_text.split("\n"), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in config" % needle)


def ctl_run(ctl, *args, env=None):
    return subprocess.run([ctl] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=scaled(30), env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def rx(receiver):
    return receiver()


@pytest.fixture
def d(sluiced, rx):
    return sluiced(route_conf(rx))


def first_delivery(d, rx):
    """One message through, so that the route site exists; returns its name."""
    inject(d, "first@dst.test", subject="first")
    rx.wait_for(1)
    return route_site(d)


# ---- status and queue ---------------------------------------------------------------

def test_status_fields(d, rx):
    j = api_ok(d, "GET", "/v1/status")
    assert j["pid"] == d.pid
    assert j["workers"] == 2
    assert j["hostname"] == "mta.test"
    assert os.path.realpath(j["config"]) == os.path.realpath(d.conf_path)
    assert isinstance(j["version"], str) and j["version"]
    assert isinstance(j["uptime"], int) and j["uptime"] >= 0
    c = j["counters"]
    for k in ("messages", "recipients", "received", "delivered", "transient", "bounced",
              "expired"):
        assert isinstance(c[k], int), k
    received = c["received"]

    inject(d, ["a@dst.test", "b@dst.test"])
    rx.wait_for(1)
    c = wait_until(lambda: (lambda c: c if c["delivered"] >= 2 else None)(
        api_ok(d, "GET", "/v1/status")["counters"]), 10, what="delivered counter")
    assert c["received"] == received + 1
    assert c["bounced"] == 0


def test_queue_counts_and_site_details(d, rx):
    name = first_delivery(d, rx)
    api_ok(d, "POST", "/v1/sites/%s/suspend" % name)
    for i in range(3):
        inject(d, ["q%d@dst.test" % i, "r%d@dst.test" % i])
    wait_queued(d, name, 6)

    q = api_ok(d, "GET", "/v1/queue")
    assert q["messages"] == 3
    assert q["recipients"] == 6
    assert q["by_state"]["ready"] == 6
    assert q["by_state"]["suspended"] == 6
    assert q["oldest_age"] is not None and q["oldest_age"] >= 0
    [s] = [s for s in q["sites"] if s["name"] == name]
    assert s["queued"] == 6 and s["suspended"] is True

    s = site(d, name)
    assert s["name"] == name
    assert s["domain"] == "dst.test"
    assert s["route"] is True
    assert s["suspended"] is True and s["suspended_until"] is None
    assert isinstance(s["worker"], int)
    assert any("127.0.0.1" in h["addrs"] for h in s["mx"]), s["mx"]
    lim = s["limits"]
    where = "%s:%d" % (d.conf_path, conf_line(d, "domain *"))
    assert lim["route"]["value"] == "[127.0.0.1]:%d" % rx.port
    assert lim["route"]["origin"] == where
    assert lim["retry-after"]["value"] == "1s,2s"
    assert lim["retry-after"]["origin"] == where
    assert lim["bounce-after"]["origin"] == where
    assert lim["max-smtp-out"]["origin"] == "default"
    assert isinstance(lim["max-smtp-out"]["value"], int)

    # the list holds the same site
    assert name in site_names(d)
    api_ok(d, "POST", "/v1/sites/%s/resume" % name)
    rx.wait_for(4)


# ---- suspend / resume / bounce ----------------------------------------------------------

def test_suspend_then_resume(d, rx):
    name = first_delivery(d, rx)
    out = d.ctl("site", name, "suspend")
    assert "suspended until resumed" in out
    s = site(d, name)
    assert s["suspended"] is True and s["suspended_until"] is None

    for i in range(4):
        inject(d, "held%d@dst.test" % i, subject="held %d" % i)
    wait_queued(d, name, 4)
    time.sleep(scaled(1.5))          # retry-after is 1s: long enough to misbehave
    assert len(rx.messages) == 1, rx.messages
    assert site(d, name)["queued"] == 4

    assert "resumed" in d.ctl("site", name, "resume")
    msgs = rx.wait_for(5)
    assert sorted(r for m in msgs[1:] for r in m.rcpt_tos) == \
        ["held%d@dst.test" % i for i in range(4)]
    assert site(d, name)["suspended"] is False


def test_suspend_with_duration_and_reason(d, rx):
    name = first_delivery(d, rx)
    j = api_ok(d, "POST", "/v1/sites/%s/suspend" % name,
               {"duration": "2s", "reason": "provider incident"})
    assert j["suspended"] is True and j["suspended_until"] is not None
    s = site(d, name)
    assert s["suspend_reason"] == "provider incident"
    assert s["suspended_until"] is not None
    inject(d, "later@dst.test")
    # no resume: the suspension ends by itself
    msgs = rx.wait_for(2, timeout=15)
    assert msgs[1].rcpt_tos == ["later@dst.test"]
    assert site(d, name)["suspended"] is False

    code, j = d.api("POST", "/v1/sites/%s/suspend" % name, {"duration": "soon"})
    assert code == 400 and j["error"]["code"] == "bad_request"


def test_bounce_site(d, rx):
    name = first_delivery(d, rx)
    api_ok(d, "POST", "/v1/sites/%s/suspend" % name)
    # null senders: no DSNs, which would queue at this very site
    inject(d, ["x1@dst.test", "x2@dst.test"], sender="")
    inject(d, "x3@dst.test", sender="")
    wait_queued(d, name, 3)

    out = d.ctl("site", name, "bounce", "cleanup")
    assert "3 recipient(s) bounced" in out
    evs = d.wait_event("bounce", n=3,
                       recipient=lambda r: r in ("x1@dst.test", "x2@dst.test", "x3@dst.test"))
    assert {e["recipient"] for e in evs} == {"x1@dst.test", "x2@dst.test", "x3@dst.test"}
    assert all(e["site"] == name for e in evs)
    assert site(d, name)["queued"] == 0

    api_ok(d, "POST", "/v1/sites/%s/resume" % name)
    inject(d, "after@dst.test")          # something that must arrive, to wait on
    wait_until(lambda: "after@dst.test" in rx.recipients, 10, what="after@dst.test")
    time.sleep(scaled(0.5))
    delivered = set(rx.recipients)
    assert not delivered & {"x1@dst.test", "x2@dst.test", "x3@dst.test"}, delivered


def test_site_actions_unknown_site(d):
    for path in ("/v1/sites/nosuch.example", "/v1/sites/nosuch.example/suspend",
                 "/v1/sites/nosuch.example/resume", "/v1/sites/nosuch.example/bounce"):
        code, j = d.api("GET" if path.count("/") == 3 else "POST", path)
        assert code == 404, path
        assert j["error"]["code"] == "not_found"


# ---- messages -----------------------------------------------------------------------------

def test_message_show_and_delete(d, rx):
    name = first_delivery(d, rx)
    api_ok(d, "POST", "/v1/sites/%s/suspend" % name)
    qid = d.send("sender@src.test", ["m1@dst.test", "m2@dst.test"],
                 "Subject: keep me\r\n\r\nbody\r\n")
    wait_queued(d, name, 2)

    m = api_ok(d, "GET", "/v1/messages/" + qid)
    assert m["id"] == qid
    assert m["sender"] == "sender@src.test"
    assert m["deleted"] is False
    assert [(r["address"], r["state"]) for r in m["recipients"]] == \
        [("m1@dst.test", "queued"), ("m2@dst.test", "queued")]
    assert all(isinstance(r["attempts"], int) for r in m["recipients"])

    out = d.ctl("message", qid)
    assert qid in out and "m1@dst.test" in out and "m2@dst.test" in out
    assert d.ctl("message", qid, json=True)["id"] == qid

    assert "deleted" in d.ctl("message", qid, "delete")
    code, j = d.api("GET", "/v1/messages/" + qid)
    assert code == 404 or j["deleted"] is True, (code, j)

    api_ok(d, "POST", "/v1/sites/%s/resume" % name)
    inject(d, "after@dst.test")          # something that must arrive, to wait on
    msgs = rx.wait_for(2)
    time.sleep(scaled(1))
    got = set(rx.recipients)
    assert "after@dst.test" in got
    assert not got & {"m1@dst.test", "m2@dst.test"}, [m for m in msgs]

    code, j = d.api("GET", "/v1/messages/NOSUCHID")
    assert code == 404 and j["error"]["code"] == "not_found"
    code, j = d.api("DELETE", "/v1/messages/NOSUCHID")
    assert code == 404


# ---- reload -------------------------------------------------------------------------------

def test_reload_good_and_bad(d, rx):
    name = first_delivery(d, rx)
    api_ok(d, "POST", "/v1/reload")

    good = route_conf(rx, extra="max-smtp-out 3")
    d.write_conf(good)
    j = api_ok(d, "POST", "/v1/reload")
    assert j["reloaded"] is True
    where = "%s:%d" % (d.conf_path, conf_line(d, "domain *"))
    wait_until(lambda: site(d, name)["limits"]["max-smtp-out"] ==
               {"value": 3, "origin": where}, 10, what="the reloaded limit")

    d.write_conf(good + "no-such-directive 1\n")
    bad_line = conf_line(d, "no-such-directive")
    code, j = d.api("POST", "/v1/reload")
    assert code == 400, j
    assert j["error"]["code"] == "config_error"
    assert "%s:%d" % (d.conf_path, bad_line) in j["error"]["message"]
    assert any("%s:%d" % (d.conf_path, bad_line) in e for e in j["error"]["errors"])

    p = ctl_run(d.ctl_binary, "-s", d.control, "reload")
    assert p.returncode == 1
    assert "%s:%d" % (d.conf_path, bad_line) in p.stderr

    # the old config is still in force and mail still flows
    assert site(d, name)["limits"]["max-smtp-out"]["value"] == 3
    inject(d, "still@dst.test")
    assert rx.wait_for(2)[1].rcpt_tos == ["still@dst.test"]
    assert d.alive()


# ---- errors -------------------------------------------------------------------------------

def test_errors(d):
    code, j = d.api("GET", "/v1/nothing-here")
    assert code == 404 and j["error"]["code"] == "not_found"
    assert isinstance(j["error"]["message"], str) and j["error"]["message"]
    code, j = d.api("GET", "/")
    assert code == 404
    code, j = d.api("DELETE", "/v1/status")
    assert code == 405 and j["error"]["code"] == "method_not_allowed"
    code, j = d.api("GET", "/v1/reload")
    assert code == 405
    code, j = d.api("PUT", "/v1/messages")
    assert code == 405
    code, j = d.api("POST", "/v1/messages", "{not json",
                    headers={"Content-Type": "application/json"})
    assert code == 400 and j["error"]["code"] == "bad_json"
    code, j = d.api("POST", "/v1/messages", "[1, 2]")
    assert code == 400 and j["error"]["code"] == "bad_json"
    code, j = d.api("POST", "/v1/sites/x/suspend", "{oops")
    assert code == 400 and j["error"]["code"] == "bad_json"


def test_inject_refusals(d, rx):
    cases = [
        ({"to": ["a@dst.test"], "text": "x"}, "bad_request"),                       # no from
        ({"from": "not an address", "to": ["a@dst.test"], "text": "x"}, "invalid_address"),
        ({"from": "s@src.test", "to": ["good@dst.test", "bad@@x"], "text": "x"},
         "invalid_address"),
        ({"from": "s@src.test", "to": [], "text": "x"}, "bad_request"),
        ({"from": "s@src.test", "to": ["a@dst.test"]}, "bad_request"),              # no body
        ({"from": "s@src.test", "to": ["a@dst.test"], "raw": "Subject: x\n\nx\n",
          "subject": "y"}, "bad_request"),
        ({"from": "s@src.test", "to": ["a@dst.test"], "text": "x",
          "headers": {"Content-Type": "text/evil"}}, "bad_request"),
        ({"from": "s@src.test", "to": ["a@dst.test"], "text": "x",
          "headers": {"X-Bad": "a\r\nInjected: yes"}}, "bad_request"),
        ({"from": "s@src.test", "to": ["a@dst.test"], "text": "x", "pool": "nosuchpool"},
         "bad_request"),
    ]
    for body, want in cases:
        code, j = d.api("POST", "/v1/messages", body)
        assert code == 400, (body, code, j)
        assert j["error"]["code"] == want, (body, j)
    code, j = d.api("POST", "/v1/messages", {"from": "s@src.test", "to": ["bad@@x"],
                                             "text": "x"})
    assert "bad@@x" in j["error"]["message"]
    assert api_ok(d, "GET", "/v1/status")["counters"]["received"] == 0
    time.sleep(scaled(0.5))
    assert rx.messages == []


# ---- POST /v1/messages reaching the receiver -------------------------------------------------

def test_inject_raw(d, rx):
    raw = ("From: Sender <sender@src.test>\n"
           "To: rcpt@dst.test\n"
           "Subject: raw injection\n"
           "X-Custom: kept\n"
           "\n"
           "first line\n"
           ".a line that starts with a dot\n"
           ".\n"
           "caf\u00e9 8-bit body\n"
           "last line\n")
    j = api_ok(d, "POST", "/v1/messages",
               {"from": "sender@src.test", "to": ["rcpt@dst.test", "RCPT@dst.test",
                                                  "other@dst.test"], "raw": raw},
               status=202)
    # a duplicate (case-insensitive) is dropped
    assert [r["address"] for r in j["recipients"]] == ["rcpt@dst.test", "other@dst.test"]
    assert all(r["status"] == "queued" for r in j["recipients"])
    msgs = rx.wait_for(1)
    wait_until(lambda: len(rx.recipients) >= 2, 10, what="both recipients")
    m = msgs[0]
    assert m.mail_from == "sender@src.test"
    assert sorted(rx.recipients) == ["other@dst.test", "rcpt@dst.test"]
    body = m.data.decode("utf-8")
    head, _, content = body.partition("\r\n\r\n")
    assert content == ("first line\r\n.a line that starts with a dot\r\n.\r\n"
                       "caf\u00e9 8-bit body\r\nlast line\r\n")
    assert m.header("Subject") == "raw injection"
    assert m.header("X-Custom") == "kept"
    assert m.header("Message-ID")
    assert m.header("Date")

    # the API's id is the queue id in the events
    d.wait_event("delivery", n=2, id=j["id"])


def test_inject_structured(d, rx):
    text = "Hallo J\u00f6rg,\nthis is the plain part.\n.\nbye\n"
    html = "<p>Hallo J\u00f6rg, <b>html</b> part</p>\n"
    j = api_ok(d, "POST", "/v1/messages", {
        "from": "news@src.test", "to": "reader@dst.test",
        "subject": "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 a long subject line that needs "
                   "more than one encoded word to fit",
        "text": text, "html": html,
        "headers": {"X-Campaign-Tag": "spring", "Reply-To": "J\u00f6rg <joerg@src.test>"},
        "campaign": "spring-sale", "priority": 5}, status=202)
    [m] = rx.wait_for(1)
    assert m.rcpt_tos == ["reader@dst.test"]
    assert m.mail_from == "news@src.test"
    assert max(len(line) for line in m.data.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(m.data, policy=email.policy.default)
    assert msg["Subject"] == ("Gr\u00fc\u00dfe aus K\u00f6ln \u2014 a long subject line "
                              "that needs more than one encoded word to fit")
    assert msg["From"] == "news@src.test"
    assert msg["To"] == "reader@dst.test"
    assert msg["X-Campaign-Tag"] == "spring"
    assert msg["Reply-To"].addresses[0].display_name == "J\u00f6rg"
    assert msg["Reply-To"].addresses[0].addr_spec == "joerg@src.test"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Message-ID"] and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n") == text
    assert rich.get_content().replace("\r\n", "\n") == html
    assert plain["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert m.data.isascii()          # everything non-ASCII was encoded

    # the campaign travels with the message
    ev = d.wait_event("delivery", id=j["id"])[0]
    assert ev.get("campaign") == "spring-sale"


def test_inject_text_only_ascii(d, rx):
    api_ok(d, "POST", "/v1/messages", {"from": "a@src.test", "to": ["b@dst.test"],
                                       "subject": "plain", "text": "just text"},
           status=202)
    [m] = rx.wait_for(1)
    msg = email.message_from_bytes(m.data, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "just text\n"


# ---- sluicectl ----------------------------------------------------------------------------

def test_sluicectl_human_and_json(d, rx):
    name = first_delivery(d, rx)

    out = d.ctl("status")
    assert re.search(r"^pid\s+%d$" % d.pid, out, re.M), out
    assert re.search(r"^workers\s+2$", out, re.M), out
    assert re.search(r"^hostname\s+mta\.test$", out, re.M), out
    st = d.ctl("status", json=True)
    assert st["pid"] == d.pid and "counters" in st

    out = d.ctl("queue")
    assert re.search(r"^SITE\s+QUEUED\s+CONNECTIONS\s+STATE$", out, re.M), out
    assert name in out
    assert d.ctl("queue", json=True)["sites"][0]["name"] == name

    out = d.ctl("site")
    assert re.search(r"^SITE\s+DOMAIN", out, re.M) and name in out, out
    assert [s["name"] for s in d.ctl("site", json=True)["sites"]] == [name]

    out = d.ctl("site", name)
    assert re.search(r"^site\s+%s$" % re.escape(name), out, re.M), out
    assert re.search(r"^LIMIT\s+VALUE\s+FROM$", out, re.M), out
    where = "%s:%d" % (d.conf_path, conf_line(d, "domain *"))
    assert re.search(r"^retry-after\s+1s,2s\s+%s$" % re.escape(where), out, re.M), out
    assert re.search(r"^max-smtp-out\s+\d+\s+default$", out, re.M), out
    j = d.ctl("site", name, json=True)
    assert j["limits"]["retry-after"]["origin"] == where

    # --json after the command works too, and errors exit 1 with a message
    p = ctl_run(d.ctl_binary, "-s", d.control, "site", "nosuch.example", "--json")
    assert p.returncode == 1
    assert "no such site" in p.stderr
    assert json.loads(p.stdout)["error"]["code"] == "not_found"

    # -c CONFIG finds the socket; so does SLUICE_SOCKET
    p = ctl_run(d.ctl_binary, "-c", d.conf_path, "status")
    assert p.returncode == 0 and str(d.pid) in p.stdout, p.stderr
    env = dict(os.environ, SLUICE_SOCKET=d.control)
    p = ctl_run(d.ctl_binary, "status", env=env)
    assert p.returncode == 0 and str(d.pid) in p.stdout, p.stderr


def test_sluicectl_usage(sluiced_bin):
    ctl = sluiced_bin[1]
    p = ctl_run(ctl, "help")
    assert p.returncode == 0 and "site NAME suspend" in p.stdout
    for args in (["frobnicate"], [], ["site", "x", "explode"], ["message"],
                 ["site", "x", "suspend", "not-a-duration"]):
        p = ctl_run(ctl, "-s", "/nonexistent/sock", *args)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("sluicectl: ") or p.stderr.startswith("usage:"), p.stderr


def test_sluicectl_missing_socket(sluiced_bin, tmp_path):
    ctl = sluiced_bin[1]
    sock = str(tmp_path / "absent.sock")
    for args in (["status"], ["--json", "queue"], ["site", "x", "resume"]):
        p = ctl_run(ctl, "-s", sock, *args)
        assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
        assert "cannot connect to %s" % sock in p.stderr
    # a socket file nobody listens on (a daemon that died)
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    p = ctl_run(ctl, "-s", stale, "status")
    assert p.returncode == 2 and "cannot connect to %s" % stale in p.stderr


def test_stale_socket_is_replaced(sluiced, rx, tmp_path):
    """A socket left by a crashed daemon does not stop the next one."""
    d = sluiced(route_conf(rx), start=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(d.control)
    s.close()
    d.start()
    assert api_ok(d, "GET", "/v1/status")["pid"] == d.pid
    assert (os.stat(d.control).st_mode & 0o777) == 0o660
