"""IP warm-up against a real sluiced, a real DNS server and a real receiver:
a source warming up sends a provider no more than the day's cap (counted
at the receiver by the source address each message came from), the rest
waits or goes to a warmed source of the same pool, and the day's count
survives a graceful restart and a kill -9. The schedule day is chosen with
`warmup-start`, so no test waits for a UTC midnight."""

import datetime
import re
import time

import pytest

from conftest import mx_conf
from peers import scaled, wait_until

S1, S2 = "127.0.0.2", "127.0.0.3"

# day 1: gmail 2; day 2: gmail 3; day 3 on: gmail 1000; others 100, then
# no cap from day 3 (not named, no "*")
SCHEDULE = """\
warmup-schedule t {
    day 1 gmail 2 * 100
    day 2 gmail 3 * 100
    day 3 gmail 1000
}
provider gmail { mx *.gmail.test }
"""


def start_date(day):
    """The warmup-start that makes today day `day` of the schedule (UTC)."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    return (today - datetime.timedelta(days=day - 1)).isoformat()


def conf(rx, day=2, pool="pool default { source s1 }", start=True):
    return mx_conf(rx) + SCHEDULE + (
        "source s1 { address %s ehlo s1.test warmup t %s }\n"
        "source s2 { address %s ehlo s2.test }\n"
        "%s\n") % (S1, "warmup-start %s" % start_date(day) if start else "", S2, pool)


def zone(dns):
    dns.add("g.test", "MX", (10, "mx.gmail.test"))
    dns.add("mx.gmail.test", "A", "127.0.0.1")
    dns.add("o.test", "MX", (10, "mx.other.test"))
    dns.add("mx.other.test", "A", "127.0.0.1")


def inject(d, n, domain="g.test", tag="m"):
    for i in range(n):
        d.send("sender@src.test", "%s%d@%s" % (tag, i, domain),
               "Subject: %s %d\r\n\r\nhello\r\n" % (tag, i))


def by_source(rx):
    out = {}
    for m in rx.messages:
        out[m.peer[0]] = out.get(m.peer[0], 0) + 1
    return out


def warmup(d, source="s1"):
    code, j = d.api("GET", "/v1/warmup")
    assert code == 200, j
    for s in j["sources"]:
        if s["source"] == source:
            return j, s
    raise AssertionError("no source %s in %r" % (source, j))


def cap_of(s, provider):
    for p in s["providers"]:
        if p["provider"] == provider:
            return p
    raise AssertionError("no provider %s in %r" % (provider, s))


def queued_at(d, site):
    code, j = d.api("GET", "/v1/sites")
    assert code == 200, j
    return sum(s["queued"] for s in j["sites"] if s["name"] == site)


def held(d, n):
    """The gmail site holds n recipients and sluiced logged that it holds
    them for the warm-up (not, say, because a connection is still busy)."""
    wait_until(lambda: queued_at(d, "gmail") == n and "event=warmup-held" in d.log_text(),
               10, what="%d recipients held at gmail" % n)


@pytest.fixture
def rx(receiver):
    return receiver()


def test_cap_lets_exactly_n_through_and_holds_the_rest(sluiced, rx, dns_server):
    zone(dns_server)
    d = sluiced(conf(rx, day=2))
    inject(d, 7)
    rx.wait_for(3)
    ev = d.wait_event("warmup-cap-reached", source="s1")[0]
    assert ev["provider"] == "gmail" and ev["site"] == "gmail", ev
    assert ev["day"] == 2 and ev["cap"] == 3 and ev["count"] == 3, ev
    assert ev["source_ip"] == S1 and ev["schedule"] == "t", ev
    held(d, 4)
    time.sleep(scaled(1))
    assert by_source(rx) == {S1: 3}

    # other destinations have their own cap ("*": 100 on day 2)
    inject(d, 2, domain="o.test", tag="o")
    rx.wait_for(5)
    assert by_source(rx) == {S1: 5}

    j, s = warmup(d)
    assert j["date"] == datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert s["schedule"] == "t" and s["day"] == 2 and s["days"] == 3, s
    assert s["start"] == start_date(2) and s["start_from"] == "config", s
    assert s["complete"] is False
    assert cap_of(s, "gmail") == {"provider": "gmail", "cap": 3, "count": 3, "reached": True}
    assert cap_of(s, "*") == {"provider": "*", "cap": 100, "count": 2, "reached": False}
    _, s2 = warmup(d, "s2")
    assert s2["schedule"] is None and s2["complete"] is True
    code, site = d.api("GET", "/v1/sites/gmail")
    assert code == 200, site
    assert [(ln["source"], ln["ready"], ln["warmup_cap_reached"]) for ln in site["lanes"]] == \
        [("s1", 4, True)]

    out = d.ctl("warmup")
    assert re.search(r"^s1\s+127\.0\.0\.2\s+t\s+2/3\s+%s \(config\)\s+gmail\s+3\s+3\s+cap reached$"
                     % start_date(2), out, re.M), out
    assert re.search(r"^s1\s+.*\*\s+100\s+2\s+sending$", out, re.M), out
    assert re.search(r"^s2\s+127\.0\.0\.3\s+-.*warm \(no warm-up\)$", out, re.M), out
    assert d.ctl("warmup", json=True) == d.api("GET", "/v1/warmup")[1]

    # the next schedule day (a new warmup-start, as a day passing would do)
    # releases what waits: day 3 has gmail 1000
    d.reload(conf(rx, day=3))
    rx.wait_for(9)
    assert by_source(rx) == {S1: 9}
    _, s = warmup(d)
    assert s["day"] == 3 and cap_of(s, "gmail")["count"] == 7


def test_overflow_goes_to_a_warmed_source_of_the_pool(sluiced, rx, dns_server):
    zone(dns_server)
    # s1 gets nearly everything by weight, until its cap
    d = sluiced(conf(rx, day=2, pool="pool default { source s1 weight 1000 source s2 weight 1 }"))
    inject(d, 10)
    rx.wait_for(10)
    assert by_source(rx) == {S1: 3, S2: 7}
    d.wait_event("warmup-cap-reached", source="s1", provider="gmail")
    evs = d.wait_event("delivery", n=10)
    assert sorted(e["source"] for e in evs) == ["s1"] * 3 + ["s2"] * 7
    assert queued_at(d, "gmail") == 0


def test_day_one_and_completed_warmup(sluiced, rx, dns_server):
    zone(dns_server)
    d = sluiced(conf(rx, day=1))
    inject(d, 4)
    rx.wait_for(2)
    held(d, 2)
    assert by_source(rx) == {S1: 2}
    # day 4: after the last listed day the warm-up is complete
    d.reload(conf(rx, day=4))
    rx.wait_for(4)
    _, s = warmup(d)
    assert s["complete"] is True and s["day"] == 4 and s["providers"] == [], s
    inject(d, 5, tag="late")
    rx.wait_for(9)
    assert by_source(rx) == {S1: 9}


def test_start_is_kept_in_the_store(sluiced, rx, dns_server):
    zone(dns_server)
    d = sluiced(conf(rx, start=False))
    _, s = warmup(d)
    assert s["start"] is None and s["start_from"] == "first send" and s["day"] == 1, s
    inject(d, 3)
    rx.wait_for(2)
    held(d, 1)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    _, s = warmup(d)
    assert s["start"] == today and s["start_from"] == "store" and s["day"] == 1, s
    assert "event=warmup-started source=s1 date=%s" % today in d.log_text()
    d.restart()
    _, s = warmup(d)
    assert s["start"] == today and s["start_from"] == "store", s
    assert cap_of(s, "gmail")["count"] == 2
    held(d, 1)
    assert by_source(rx) == {S1: 2}


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_count_survives_a_restart(sluiced, rx, dns_server, how):
    zone(dns_server)
    d = sluiced(conf(rx, day=2))
    inject(d, 5)
    rx.wait_for(3)
    d.wait_event("warmup-cap-reached", source="s1")
    held(d, 2)
    if how == "graceful":
        d.stop()
    else:
        # the count is written behind the sending; give the store writer
        # its commit (milliseconds) before the crash
        time.sleep(scaled(1))
        d.kill9()
    log_before = len(d.log_text())
    d.start()
    # the spool brought the 2 back; the store brought the count back
    wait_until(lambda: queued_at(d, "gmail") == 2 and
               "event=warmup-held" in d.log_text()[log_before:],
               10, what="the 2 recipients held again after the restart")
    time.sleep(scaled(1))
    assert by_source(rx) == {S1: 3}
    _, s = warmup(d)
    assert cap_of(s, "gmail") == {"provider": "gmail", "cap": 3, "count": 3, "reached": True}
    # and they are still deliverable: the next day lets them go
    d.reload(conf(rx, day=3))
    rx.wait_for(5)
    assert by_source(rx) == {S1: 5}


def test_waiting_mail_expires_at_bounce_after(sluiced, rx, dns_server):
    zone(dns_server)
    text = conf(rx, day=1).replace("provider gmail { mx *.gmail.test }",
                                   "provider gmail { mx *.gmail.test bounce-after 2s }")
    d = sluiced(text)
    inject(d, 3)
    rx.wait_for(2)
    held(d, 1)
    time.sleep(scaled(2.5))
    # new mail wakes the lane: the old recipient is past bounce-after, the new one waits
    inject(d, 1, tag="late")
    ev = d.wait_event("expired", recipient="m2@g.test")[0]
    assert ev["source"] == "s1" and ev["site"] == "gmail", ev
    assert ev["status"] == "4.7.0", ev
    assert "reached its warm-up cap for gmail" in ev["reply"], ev
    wait_until(lambda: queued_at(d, "gmail") == 1, 10, what="the late recipient waiting")
    assert by_source(rx) == {S1: 2}


def test_deferrals_do_not_spend_the_cap(sluiced, receiver, dns_server):
    """A provider throttling a new IP (4xx) must not use up its day's cap:
    only recipients that got a 2xx or 5xx count; deferred ones are given
    back and go out on retry."""
    tries = {}

    def rcpt(addr):
        tries[addr] = tries.get(addr, 0) + 1
        return "451 4.7.0 Temporary deferral, try again later" if tries[addr] <= 2 else None
    rx = receiver(rcpt_reply=rcpt)
    zone(dns_server)
    d = sluiced(conf(rx, day=2))
    inject(d, 3)
    # 3 recipients x 2 deferrals = 6 attempts, more than the cap of 3
    rx.wait_for(3, timeout=scaled(30))
    assert by_source(rx) == {S1: 3}
    assert all(n == 3 for n in tries.values()), tries
    _, s = warmup(d)
    assert cap_of(s, "gmail")["count"] == 3
