"""Live site limits: POST /v1/sites/NAME/limits and `sluicectl site NAME set`,
against a real sluiced and a real receiver. A live value shows in the site's
limits with origin "live (control API)", changes what the receiver sees, is
all-or-nothing per request, and lasts until the next reload."""

import re
import time

import pytest

from conftest import route_conf
from peers import scaled, wait_until

LIVE = "live (control API)"
SETTABLE = ("max-smtp-out", "max-msg-per-connection", "max-rcpt-per-message",
            "max-msg-rate", "max-connect-rate", "retry-after", "bounce-after", "tls")


# ---- helpers ----------------------------------------------------------------------

def api_ok(d, method, path, body=None, status=200):
    code, j = d.api(method, path, body)
    assert code == status, "%s %s -> %d %r" % (method, path, code, j)
    return j


def inject(d, to, subject="test"):
    j = api_ok(d, "POST", "/v1/messages", {"from": "sender@src.test", "to": to,
                                           "subject": subject, "text": "hello\n"}, status=202)
    return j["id"]


def limits(d, name):
    return api_ok(d, "GET", "/v1/sites/" + name)["limits"]


def first_delivery(d, rx):
    """One message through so that the route site exists; returns its name
    (read from GET /v1/sites, not guessed)."""
    inject(d, "first@dst.test", subject="first")
    rx.wait_for(1)

    def find():
        for s in api_ok(d, "GET", "/v1/sites")["sites"]:
            if s["name"].startswith("route:"):
                return s["name"]
        return None
    name = wait_until(find, 10, what="the route site in GET /v1/sites")
    assert name == "route:127.0.0.1:%d" % rx.port
    return name


@pytest.fixture
def rx(receiver):
    return receiver()


# ---- setting and showing ------------------------------------------------------------

def test_set_rate_with_sluicectl_shows_live_origin(sluiced, rx):
    d = sluiced(route_conf(rx))
    name = first_delivery(d, rx)
    before = limits(d, name)
    assert before["max-msg-rate"]["origin"] == "default"

    out = d.ctl("site", name, "set", "max-msg-rate", "100/h")
    assert re.search(r"max-msg-rate\s+100/h\s+live \(control API\)", out), out

    lim = d.ctl("site", name, json=True)["limits"]
    assert lim["max-msg-rate"] == {"value": "100/h", "origin": LIVE}
    # nothing else moved
    for k, v in before.items():
        if k != "max-msg-rate":
            assert lim[k] == v, k

    # --json on set prints the API's answer: what changed and the limits
    j = d.ctl("site", name, "set", "max-smtp-out", "3", "tls", "none", json=True)
    assert j["site"] == name
    assert sorted(j["changed"]) == ["max-smtp-out", "tls"]
    assert j["limits"]["max-smtp-out"] == {"value": 3, "origin": LIVE}
    assert j["limits"]["tls"] == {"value": "none", "origin": LIVE}
    assert j["limits"]["max-msg-rate"] == {"value": "100/h", "origin": LIVE}
    assert j["limits"] == limits(d, name)


def test_api_takes_numbers_and_strings_and_every_settable_limit(sluiced, rx):
    d = sluiced(route_conf(rx))
    name = first_delivery(d, rx)
    body = {"max-smtp-out": 5, "max-msg-per-connection": "7", "max-rcpt-per-message": 9,
            "max-msg-rate": "20/m", "max-connect-rate": "5/s", "retry-after": "30s,2m",
            "bounce-after": "2h", "tls": "opportunistic"}
    j = api_ok(d, "POST", "/v1/sites/%s/limits" % name, body)
    assert sorted(j["changed"]) == sorted(SETTABLE)
    lim = j["limits"]
    want = {"max-smtp-out": 5, "max-msg-per-connection": 7, "max-rcpt-per-message": 9,
            "max-msg-rate": "20/m", "max-connect-rate": "5/s", "retry-after": "30s,2m",
            "bounce-after": "2h", "tls": "opportunistic"}
    for k, v in want.items():
        assert lim[k] == {"value": v, "origin": LIVE}, k
    assert lim["route"]["origin"] != LIVE

    # "unlimited" (what GET shows for 0/h) can be set back
    j = api_ok(d, "POST", "/v1/sites/%s/limits" % name, {"max-msg-rate": "unlimited"})
    assert j["limits"]["max-msg-rate"] == {"value": "unlimited", "origin": LIVE}


def test_bad_value_changes_nothing(sluiced, rx):
    d = sluiced(route_conf(rx))
    name = first_delivery(d, rx)
    before = limits(d, name)

    # a good value first, then a bad one: neither is applied
    d.ctl("site", name, "set", "max-smtp-out", "7", "max-msg-rate", "fast", check=False)
    p = d.last_ctl
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "max-msg-rate" in p.stderr and "expected a rate like 3600/h" in p.stderr, p.stderr
    assert limits(d, name) == before

    code, j = d.api("POST", "/v1/sites/%s/limits" % name, {"max-smtp-out": 0})
    assert code == 400, j
    assert j["error"]["code"] == "bad_limit"
    assert j["error"]["message"] == "max-smtp-out: 0 is out of range (1-10000)"

    code, j = d.api("POST", "/v1/sites/%s/limits" % name, {"bounce-after": "10ms"})
    assert code == 400 and j["error"]["code"] == "bad_limit", j
    assert j["error"]["message"].startswith("bounce-after: "), j
    assert "too short" in j["error"]["message"]

    code, j = d.api("POST", "/v1/sites/%s/limits" % name, {"tls": "sometimes"})
    assert code == 400 and "none|opportunistic|required|verify" in j["error"]["message"], j

    code, j = d.api("POST", "/v1/sites/%s/limits" % name, {"max-smtp-out": True})
    assert code == 400 and j["error"]["code"] == "bad_limit", j

    code, j = d.api("POST", "/v1/sites/%s/limits" % name, {})
    assert code == 400 and j["error"]["code"] == "bad_limit", j
    assert limits(d, name) == before


def test_unknown_limit_lists_the_settable_names(sluiced, rx):
    d = sluiced(route_conf(rx))
    name = first_delivery(d, rx)
    before = limits(d, name)
    code, j = d.api("POST", "/v1/sites/%s/limits" % name,
                    {"max-smtp-out": 4, "mx-rollup": "no"})
    assert code == 400, j
    assert j["error"]["code"] == "bad_limit"
    msg = j["error"]["message"]
    assert "mx-rollup" in msg
    for k in SETTABLE:
        assert k in msg, (k, msg)
    assert limits(d, name) == before

    # usage errors in sluicectl never reach the daemon
    d.ctl("site", name, "set", "max-smtp-out", check=False)
    assert d.last_ctl.returncode == 1 and "LIMIT VALUE" in d.last_ctl.stderr


def test_unknown_site_is_404(sluiced, rx):
    d = sluiced(route_conf(rx))
    first_delivery(d, rx)
    code, j = d.api("POST", "/v1/sites/nosuch.example/limits", {"max-smtp-out": 4})
    assert code == 404 and j["error"]["code"] == "not_found", j
    d.ctl("site", "nosuch.example", "set", "max-smtp-out", "4", check=False)
    assert d.last_ctl.returncode == 1
    assert "no such site" in d.last_ctl.stderr


# ---- effect on delivery -----------------------------------------------------------

def test_live_rate_slows_a_batch_and_raising_it_takes_effect(sluiced, rx):
    d = sluiced(route_conf(rx))
    name = first_delivery(d, rx)
    base = len(rx.messages)

    # hold a batch of 30 at the site, then set 60/m (1/s, a burst of one)
    api_ok(d, "POST", "/v1/sites/%s/suspend" % name)
    for i in range(30):
        inject(d, "r%d@dst.test" % i, subject="batch %d" % i)
    wait_until(lambda: api_ok(d, "GET", "/v1/sites/" + name)["queued"] >= 30, 10,
               what="30 recipients queued at the suspended site")
    d.ctl("site", name, "set", "max-msg-rate", "60/m")

    api_ok(d, "POST", "/v1/sites/%s/resume" % name)
    time.sleep(2)
    early = len(rx.messages) - base
    # unlimited, the 30 go out in well under a second; at 1/s about 3 do
    assert early <= 10, "%d of 30 arrived in the first 2 s at 60/m" % early
    # the lane is paced, not stuck
    rx.wait_for(base + early + 1)

    # 1/h: after its one token the lane sleeps for an hour
    d.ctl("site", name, "set", "max-msg-rate", "1/h")
    time.sleep(1)
    assert len(rx.messages) < base + 30
    # lift the limit: the sleeping lane wakes now, not in an hour
    d.ctl("site", name, "set", "max-msg-rate", "unlimited")
    t0 = time.monotonic()
    rx.wait_for(base + 30, timeout=15)
    assert time.monotonic() - t0 < scaled(10)
    assert sorted(m.rcpt_tos[0] for m in rx.messages[base:]) == \
        sorted("r%d@dst.test" % i for i in range(30))


# ---- reload ----------------------------------------------------------------------

def test_reload_restores_the_config_value(sluiced, rx):
    d = sluiced(route_conf(rx, extra="max-msg-rate 500/h"))
    name = first_delivery(d, rx)
    conf_value = limits(d, name)["max-msg-rate"]
    assert conf_value["value"] == "500/h"
    assert conf_value["origin"].startswith(d.conf_path + ":"), conf_value

    d.ctl("site", name, "set", "max-msg-rate", "60/m", "max-smtp-out", "2")
    lim = limits(d, name)
    assert lim["max-msg-rate"] == {"value": "60/m", "origin": LIVE}
    assert lim["max-smtp-out"] == {"value": 2, "origin": LIVE}

    d.ctl("reload")
    lim = wait_until(lambda: (lambda l: l if l["max-msg-rate"]["origin"] != LIVE else None)(
        limits(d, name)), 10, what="reload to replace the live value")
    assert lim["max-msg-rate"] == conf_value
    assert lim["max-smtp-out"] == {"value": 20, "origin": "default"}
