"""Backoff automation: a throttling reply matched by a `backoff-rules` rule
suspends the site (nothing reaches the receiver until the suspension ends,
then the deferred mail goes) or lowers the lane's rate until it recovers.
Assertions are on what the receiver got; timings only in wide bands."""

import subprocess
import time

from conftest import route_conf

GMAIL_421 = ("421-4.7.28 [127.0.0.1      15] Our system has detected an unusual rate of\n"
             "421-4.7.28 unsolicited mail originating from your IP address. To protect our\n"
             "421-4.7.28 users from spam, mail sent from your IP address has been\n"
             "421-4.7.28 temporarily rate limited. Please visit\n"
             "421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n"
             "421 4.7.28 review our Bulk Email Senders Guidelines. a1si123.456 - gsmtp")
MSG = "Subject: t\r\n\r\nhello\r\n"


def site_name(rx):
    return "route:127.0.0.1:%d" % rx.port


def test_421_suspends_the_site_until_it_resumes(sluiced, receiver, tmp_path):
    rules = tmp_path / "backoff.conf"
    rules.write_text("# Gmail's rate limit\n"
                     "code=421 status=4.7.28 suspend=3s /unusual rate/\n")
    rx = receiver(rcpt_reply=GMAIL_421)
    d = sluiced(route_conf(rx) + "backoff-rules %s\n" % rules)
    d.send("a@src.test", ["one@dst.test", "two@dst.test"], MSG)

    ev = d.wait_event("site-backoff")[0]
    rx.set(rcpt_reply=None)               # the receiver would accept now
    seen_at = time.monotonic()
    assert ev["site"] == site_name(rx)
    assert ev["rules"] == str(rules) and ev["rule_line"] == 2
    assert ev["action"] == "suspend=3s"
    assert ev["reply"].startswith("421 4.7.28 ") and "unusual rate" in ev["reply"]
    assert "suspended_until" in ev
    # one transaction, one event (both recipients got the 421)
    assert len(d.events("site-backoff")) == 1
    susp = d.wait_event("site-suspended", site=site_name(rx))[0]
    assert "backoff rule %s:2" % rules in susp["reason"]

    status, site = d.api("GET", "/v1/sites/" + site_name(rx))
    assert status == 200, site
    assert site["suspended"] is True
    assert "backoff rule" in site["suspend_reason"]

    # the recipients are retried every second, but the site stays shut
    conns = len(rx.connections)
    d.send("a@src.test", ["three@dst.test"], MSG)
    while time.monotonic() - seen_at < 2.0:
        assert rx.messages == [], "delivered during the suspension: %r" % rx.messages
        assert len(rx.connections) == conns, "connected during the suspension"
        time.sleep(0.1)
    assert len(d.events("transient")) >= 2

    # then it resumes by itself and everything goes
    msgs = rx.wait_for(2, timeout=15)
    got = sorted(r for m in msgs for r in m.rcpt_tos)
    assert got == ["one@dst.test", "three@dst.test", "two@dst.test"]
    assert time.monotonic() - seen_at >= 2.0
    rec = d.wait_event("site-recovered", site=site_name(rx))[0]
    assert rec["rule_line"] == 2
    status, site = d.api("GET", "/v1/sites/" + site_name(rx))
    assert site["suspended"] is False


def test_rate_action_lowers_the_pace_then_recovers(sluiced, receiver, tmp_path):
    rules = tmp_path / "backoff.conf"
    rules.write_text("code=451 rate=2/s recover=1h recover-after=6 /slow down/\n")
    throttled = []

    def rcpt(addr):
        if addr.startswith("throttle") and not throttled:
            throttled.append(addr)
            return "451 4.7.0 slow down please"
        return None

    rx = receiver(rcpt_reply=rcpt)
    d = sluiced(route_conf(rx) + "backoff-rules %s\n" % rules)
    d.send("a@src.test", ["throttle@dst.test"], MSG)
    ev = d.wait_event("site-backoff")[0]
    assert ev["rule_line"] == 1
    assert ev["action"] == "rate=2/s recover=1h recover-after=6"
    assert ev["max_msg_rate"] == "2/s"

    start = time.monotonic()
    for i in range(10):
        d.send("a@src.test", ["r%d@dst.test" % i], MSG)
    # 2/s from an empty bucket: the sixth message goes at about 3 s. Unthrottled,
    # all ten arrive in a fraction of a second.
    rx.wait_for(2, timeout=10)
    early = len(rx.messages)
    assert early <= 4, "%d messages in the first moments at 2/s" % early
    rec = d.wait_event("site-recovered", timeout=20)[0]
    assert rec["after"] == "deliveries"
    assert time.monotonic() - start >= 1.5
    msgs = rx.wait_for(11, timeout=15)
    assert sorted(r for m in msgs for r in m.rcpt_tos) == sorted(
        ["throttle@dst.test"] + ["r%d@dst.test" % i for i in range(10)])
    assert len(d.events("site-backoff")) == 1


def test_builtin_rules_and_bad_file(sluiced_bin, tmp_path):
    rules = tmp_path / "backoff.conf"
    rules.write_text("code=421 suspend=1m\ncode=421 rate=fast\n")
    conf = tmp_path / "s.conf"
    conf.write_text("hostname t\nbackoff-rules %s\n" % rules)
    out = subprocess.run([sluiced_bin[0], "-n", "-c", str(conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "%s:2: backoff-rules: %s:2: rate=fast: expected a rate" % (conf, rules) \
        in out.stderr
    conf.write_text("hostname t\n")
    out = subprocess.run([sluiced_bin[0], "-n", "-c", str(conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
