"""Variants chosen by Thompson sampling (issue 10): a campaign with three
variants for a segment is sent in rounds to a real receiver while the test
posts open events that make one variant the clear winner; later rounds
send most recipients the winner, the posteriors survive a restart, and
every delivery event names its variant. What each recipient got is read
from the messages the receiver holds, not from what sluiced says."""

import json

from conftest import BASE_CONF, route_conf, wait_until

NDJSON = {"Content-Type": "application/x-ndjson"}
SUBJECTS = {"A": "Spring is here", "B": "Twenty percent off", "C": "Your spring picks"}


def ndjson(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def api_ok(d, method, path, body=None, status=200, headers=None):
    code, j = d.api(method, path, body, headers=headers)
    assert code == status, "%s %s -> %d %r" % (method, path, code, j)
    return j


def variant_of(msg):
    subject = msg.header("Subject")
    for vid, s in SUBJECTS.items():
        if subject == s:
            return vid
    return subject


def got(rx, n, start):
    """The variant each of the messages start..start+n went to, by recipient."""
    msgs = rx.wait_for(start + n, timeout=90)
    return {m.rcpt_tos[0]: variant_of(m) for m in msgs[start:start + n]}


def post_opens(d, rcpts, campaign="spring"):
    code, j = d.api("POST", "/v1/events", ndjson(*[
        {"type": "open", "email": r, "campaign": campaign} for r in rcpts]), headers=NDJSON)
    assert code == 200 and j["accepted"] == len(rcpts), j


def variants(d, campaign="spring"):
    j = api_ok(d, "GET", "/v1/campaigns/%s/variants" % campaign)
    return {v["id"]: v for g in j["segments"] if g["segment"] == "fans" for v in g["variants"]}


def test_rounds_converge_on_the_winner_and_survive_a_restart(sluiced, receiver):
    rx = receiver()
    d = sluiced(route_conf(rx, base=BASE_CONF + "engagement-half-life 365d\n"))
    rounds = [["r1-%02d@dst.test" % i for i in range(60)],
              ["r2-%02d@dst.test" % i for i in range(60)],
              ["r3-%02d@dst.test" % i for i in range(40)]]
    api_ok(d, "PUT", "/v1/segments/fans", "".join(r + "\n" for rs in rounds for r in rs),
           headers=NDJSON)

    camp = {"id": "spring", "from": "news@src.test", "subject": "Spring sale",
            "text": "Hello {{email}}\n", "max_delay": "0", "reward": "open",
            "explore_until": 10,
            "variants": [{"segment": "fans", "variants": [
                {"id": vid, "subject": s} for vid, s in sorted(SUBJECTS.items())]}]}
    code, j = d.api("POST", "/v1/campaigns", ndjson(camp, *[{"email": r} for r in rounds[0]]),
                    headers=NDJSON)
    assert code == 201, j

    # round 1: every variant explored 10 times, the rest sampled
    r1 = got(rx, 60, 0)
    assert sorted(r1) == sorted(rounds[0])
    counts = {v: list(r1.values()).count(v) for v in SUBJECTS}
    assert all(counts[v] >= 10 for v in SUBJECTS), counts
    # the delivery events name the variant each recipient got
    evs = d.wait_event("delivery", n=60, campaign="spring")
    assert {e["recipient"]: e["variant"] for e in evs} == r1
    assert all(e["segment"] == "fans" for e in evs)

    # everyone who got B opens, and one who got A: B is the clear winner
    b1 = [r for r, v in r1.items() if v == "B"]
    a1 = [r for r, v in r1.items() if v == "A"][:1]
    post_opens(d, b1 + a1)
    post_opens(d, b1)          # a second open by the same people counts once
    wait_until(lambda: variants(d)["B"]["opens"] == len(b1), 10, what="B's opens counted")
    v = variants(d)
    assert v["A"]["opens"] == 1 and v["C"]["opens"] == 0
    # the explain endpoint says which variant a recipient got and why
    ex = api_ok(d, "GET", "/v1/campaigns/spring/recipients/%s" % b1[0])["variant"]
    assert (ex["id"], ex["segment"], ex["opened"], ex["clicked"]) == ("B", "fans", True, False)
    assert ex["chosen_by"] in ("explore", "sample")
    assert v["B"]["sends"] == counts["B"] and v["B"]["p_best"] > 0.99

    # round 2: most recipients get B
    api_ok(d, "POST", "/v1/campaigns/spring/recipients",
           ndjson(*[{"email": r} for r in rounds[1]]), headers=NDJSON)
    r2 = got(rx, 60, 60)
    share2 = list(r2.values()).count("B") / 60.0
    assert share2 >= 0.8, r2
    ex = api_ok(d, "GET", "/v1/campaigns/spring/recipients/%s" % rounds[1][0])["variant"]
    assert ex["chosen_by"] == "sample" and ex["id"] == r2[rounds[1][0]]
    post_opens(d, [r for r, v in r2.items() if v == "B"])
    wait_until(lambda: variants(d)["B"]["opens"] == len(b1) + list(r2.values()).count("B"),
               10, what="round 2 opens counted")
    before = variants(d)

    # the posteriors survive a restart
    d.restart()
    after = variants(d)
    for vid in SUBJECTS:
        assert (after[vid]["sends"], after[vid]["opens"]) == \
            (before[vid]["sends"], before[vid]["opens"]), (before, after)
    api_ok(d, "POST", "/v1/campaigns/spring/recipients",
           ndjson(*[{"email": r} for r in rounds[2]]), headers=NDJSON)
    r3 = got(rx, 40, 120)
    assert list(r3.values()).count("B") / 40.0 >= 0.8, r3

    out = d.ctl("variants", "spring")
    line = [l for l in out.split("\n") if l.split()[:2] == ["fans", "B"]]
    assert line, out
    assert int(line[0].split()[2]) == after["B"]["sends"] + list(r3.values()).count("B")


def test_default_group_and_own_content(sluiced, receiver):
    """Recipients outside the listed segments get the "*" group, or the
    campaign's own content when there is none; a variant's missing parts
    are the campaign's own; one variant needs no choosing."""
    rx = receiver()
    d = sluiced(route_conf(rx))
    api_ok(d, "PUT", "/v1/segments/vip", b"vip@dst.test\n", headers=NDJSON)
    camp = {"id": "c1", "from": "news@src.test", "subject": "Own subject",
            "text": "own text\n", "max_delay": "0",
            "variants": [{"segment": "vip", "variants": [{"id": "V", "subject": "For VIPs"}]}]}
    code, j = d.api("POST", "/v1/campaigns", ndjson(
        camp, {"email": "vip@dst.test"}, {"email": "other@dst.test"},
        {"email": "inline@dst.test", "segment": "vip"}), headers=NDJSON)
    assert code == 201, j
    msgs = {m.rcpt_tos[0]: m for m in rx.wait_for(3, timeout=30)}
    assert msgs["vip@dst.test"].header("Subject") == "For VIPs"
    assert "own text" in msgs["vip@dst.test"].msg.get_body(("plain",)).get_content()
    assert msgs["inline@dst.test"].header("Subject") == "For VIPs"
    assert msgs["other@dst.test"].header("Subject") == "Own subject"
    evs = {e["recipient"]: e for e in d.wait_event("delivery", n=3, campaign="c1")}
    assert evs["vip@dst.test"]["variant"] == "V"
    assert "variant" not in evs["other@dst.test"]

    camp2 = {"id": "c2", "from": "news@src.test", "max_delay": "0",
             "variants": [{"segment": "*", "variants": [{"id": "X", "subject": "Everyone",
                                                         "text": "x\n"}]}]}
    code, j = d.api("POST", "/v1/campaigns", ndjson(camp2, {"email": "other@dst.test"}),
                    headers=NDJSON)
    assert code == 201, j
    m = rx.wait_for(4, timeout=30)[3]
    assert m.header("Subject") == "Everyone"
    j = api_ok(d, "GET", "/v1/campaigns/c2/variants")
    assert j["segments"][0]["segment"] == "*"
    assert j["segments"][0]["variants"][0]["sends"] == 1


def test_invalid_variants_are_refused(sluiced, receiver):
    d = sluiced(route_conf(receiver()))
    base = {"id": "bad", "from": "news@src.test", "text": "t", "max_delay": "0"}
    many = [{"id": "v%d" % i, "subject": "s"} for i in range(21)]
    cases = [
        ({"variants": [{"segment": "s", "variants": many}]}, "1 to 20"),
        ({"variants": [{"segment": "s", "variants": [{"id": "A", "subject": "x"},
                                                     {"id": "A", "subject": "y"}]}]},
         "appears twice"),
        ({"variants": [{"segment": "s", "variants": [{"id": "A"}]}]}, "no subject"),
        ({"reward": "purchase", "variants": [{"segment": "s", "variants": [
            {"id": "A", "subject": "x"}]}]}, "reward"),
    ]
    for extra, msg in cases:
        code, j = d.api("POST", "/v1/campaigns", ndjson(dict(base, **extra),
                                                        {"email": "a@dst.test"}),
                        headers=NDJSON)
        assert code == 400 and msg in j["error"]["message"], (extra, j)
    # without content of its own, a "*" group is needed
    nocontent = {"id": "bad2", "from": "news@src.test", "max_delay": "0",
                 "variants": [{"segment": "s", "variants": [{"id": "A", "subject": "x",
                                                             "text": "y"}]}]}
    code, j = d.api("POST", "/v1/campaigns", ndjson(nocontent, {"email": "a@dst.test"}),
                    headers=NDJSON)
    assert code == 400, j
    api_ok(d, "GET", "/v1/campaigns/nothing/variants", status=404)
