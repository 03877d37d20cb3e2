"""List hygiene at send time (issue 10): sunset recipients get their
re-engagement sends and are then skipped with a `skipped` event and reason
`sunset`, while transactional mail to the same recipients still goes out;
role addresses and domains found without MX are skipped for marketing
only; spam-trap suspects are flagged in their delivery event, not dropped.
Real sluiced, real receiver (and a real DNS server), real LMDB store."""

import datetime
import json
import time

from conftest import BASE_CONF, mx_conf, route_conf, wait_until

NDJSON = {"Content-Type": "application/x-ndjson"}


def ndjson(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def campaign(d, cid, rcpts, **extra):
    camp = dict({"id": cid, "from": "news@src.test", "subject": cid, "text": "hello\n",
                 "max_delay": "0"}, **extra)
    code, j = d.api("POST", "/v1/campaigns", ndjson(camp, *[{"email": r} for r in rcpts]),
                    headers=NDJSON)
    assert code == 201, j


def events(d, *evs):
    code, j = d.api("POST", "/v1/events", ndjson(*evs), headers=NDJSON)
    assert code == 200 and j["accepted"] == len(evs), j


def done(d, cid, n):
    """Wait until n recipients of cid are delivered, skipped or suppressed."""
    def settled():
        c = d.api("GET", "/v1/campaigns/" + cid)[1]["counts"]
        return c["delivered"] + c["skipped"] + c["bounced"] + c["suppressed"] >= n
    wait_until(settled, 60, what="campaign %s settled" % cid)


def received(rx, cid):
    return sorted(m.rcpt_tos[0] for m in rx.messages if m.header("Subject") == cid)


SUNSET = {"after": "4s", "min_sends": 1, "reengage": 1}


def test_sunset_skips_marketing_not_transactional(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx, base=BASE_CONF + "skip-role-addresses yes\n"))
    people = ["keen@dst.test", "lapsed1@dst.test", "lapsed2@dst.test"]

    # first sends: nobody has history yet; the role address is skipped
    campaign(d, "m1", people + ["postmaster@dst.test"], sunset=SUNSET)
    done(d, "m1", 4)
    assert received(rx, "m1") == sorted(people)
    ev = d.wait_event("skipped", campaign="m1", recipient="postmaster@dst.test")[0]
    assert ev["reason"] == "role-address"

    # no engagement for the policy's 4 s; then "keen" opens
    time.sleep(4.5)
    events(d, {"type": "open", "email": "keen@dst.test", "campaign": "m1"})

    # the lapsed get their one re-engagement send ...
    campaign(d, "m2", people, sunset=SUNSET)
    done(d, "m2", 3)
    assert received(rx, "m2") == sorted(people)
    # ... and are skipped after it, with the reason; the engaged one is not
    campaign(d, "m3", people, sunset=SUNSET)
    done(d, "m3", 3)
    assert received(rx, "m3") == ["keen@dst.test"]
    for r in ("lapsed1@dst.test", "lapsed2@dst.test"):
        ev = d.wait_event("skipped", campaign="m3", recipient=r)[0]
        assert ev["reason"] == "sunset", ev
        assert "re-engagement" in ev["detail"], ev
    assert d.api("GET", "/v1/campaigns/m3")[1]["counts"]["skipped"] == 2

    # transactional mail to the same recipients is never skipped
    campaign(d, "t1", people + ["postmaster@dst.test"], sunset=SUNSET, type="transactional")
    done(d, "t1", 4)
    assert received(rx, "t1") == sorted(people + ["postmaster@dst.test"])
    assert not [e for e in d.events("skipped") if e.get("campaign") == "t1"]

    # the recipient view says why
    code, j = d.api("GET", "/v1/recipients/lapsed1@dst.test")
    assert code == 200, j
    assert j["inputs"]["sends"] == 3 and j["inputs"]["opens"] == 0
    assert 0 <= j["score"] < 40
    code, j = d.api("GET", "/v1/recipients/keen@dst.test")
    assert j["inputs"]["opens"] == 1 and j["score"] > 60
    out = d.ctl("recipient", "keen@dst.test")
    assert "score         %d / 100" % j["score"] in out

    # the default policy (120 days) leaves everyone alone
    campaign(d, "m4", people)
    done(d, "m4", 3)
    assert received(rx, "m4") == sorted(people)


def test_domain_without_mx_is_a_bounce_risk(sluiced, receiver, dns_server):
    rx = receiver()
    dns_server.add("dst.test", "MX", (10, "mx.dst.test"))
    dns_server.add("mx.dst.test", "A", "127.0.0.1")
    d = sluiced(mx_conf(rx))
    campaign(d, "n1", ["a@gone.test", "ok@dst.test"])
    d.wait_event("delivery", campaign="n1", recipient="ok@dst.test")
    bounce = d.wait_event("bounce", campaign="n1")[0]
    assert bounce["recipient"] == "a@gone.test"
    # a bounce at routing can come before the campaign's own scheduled ->
    # queued commit; the counters still end right
    done(d, "n1", 2)
    c = d.api("GET", "/v1/campaigns/n1")[1]["counts"]
    assert (c["delivered"], c["bounced"], c["queued"], c["scheduled"]) == (1, 1, 0, 0), c
    # a later marketing send to that domain is skipped; transactional is tried
    campaign(d, "n2", ["b@gone.test", "ok@dst.test"])
    d.wait_event("delivery", campaign="n2", recipient="ok@dst.test")
    ev = d.wait_event("skipped", campaign="n2")[0]
    assert ev["recipient"] == "b@gone.test" and ev["reason"] == "bounce-risk", ev
    assert "no MX" in ev["detail"]
    campaign(d, "n3", ["b@gone.test"], type="transactional")
    assert d.wait_event("bounce", campaign="n3")[0]["recipient"] == "b@gone.test"


def test_spam_trap_suspect_is_flagged_not_dropped(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx))
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=400))
    iso = old.strftime("%Y-%m-%dT%H:%M:%SZ")
    events(d, {"type": "send", "email": "dormant@traps.test", "time": iso, "campaign": "x"},
           {"type": "send", "email": "fresh@traps.test", "campaign": "x"})
    code, j = d.api("POST", "/v1/recipients/known-trap@traps.test/spam-trap")
    assert code == 200 and j["trap_hits"] == 1 and j["suppressed"] is True, j
    sup = d.api("GET", "/v1/recipients/known-trap@traps.test")[1]["suppression"]
    assert sup["suppressed"] is True and sup["reason"] == "spam-trap", sup

    campaign(d, "s1", ["dormant@traps.test", "fresh@traps.test", "known-trap@traps.test"])
    done(d, "s1", 3)
    # the known trap is suppressed; the suspect is sent, and flagged
    assert received(rx, "s1") == ["dormant@traps.test", "fresh@traps.test"]
    evs = {e["recipient"]: e for e in d.wait_event("delivery", n=2, campaign="s1")}
    assert evs["dormant@traps.test"].get("trap_suspect") is True
    assert "trap_suspect" not in evs["fresh@traps.test"]
    j = d.api("GET", "/v1/recipients/dormant@traps.test")[1]
    assert j["hygiene"]["trap_suspect"] is True and j["hygiene"]["domain_trap_hits"] == 1
