"""The engagement store (issue 9): POST /v1/events imports history (opens,
clicks, sends, bounces, in the past, for campaigns sluice never saw);
deliveries and bounces count automatically; sluicectl events import and
the campaign commands. Observed through the explain endpoint and dry-run
plans, against a real sluiced and receiver."""

import json
import os
import time

from conftest import BASE_CONF, route_conf, wait_until

NDJSON = {"Content-Type": "application/x-ndjson"}


def conf(rx, **kw):
    return route_conf(rx, base=BASE_CONF + "engagement-half-life 365d\n", **kw)


def nd(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def plan(d, *emails):
    """A dry-run plan over a week (explains every recipient's data)."""
    code, text = d.api("POST", "/v1/campaigns",
                       nd({"id": "p", "from": "a@src.test", "text": "x", "max_delay": "7d",
                           "start_at": "2030-01-07T00:00:00Z", "dry_run": True},
                          *[{"email": e} for e in emails]), headers=NDJSON)
    assert code == 200, text
    return {x["email"]: x for x in map(json.loads, text.strip().split("\n"))}


def test_import_counts_history_and_rejects_bad_lines(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    evs = [{"type": "open", "email": "Ann@Dst.test", "time": "2026-10-06T19:10:00Z",
            "campaign": "ses-import-1"} for _ in range(30)]
    evs += [{"type": "click", "email": "ann@dst.test", "time": "2026-10-13T19:20:00Z"},
            {"type": "send", "email": "ann@dst.test", "time": "2026-10-01T08:00:00Z"},
            {"type": "bounce", "email": "bob@dst.test"}]
    body = nd(*evs) + "not json\n" + nd({"type": "glance", "email": "ann@dst.test"},
                                        {"type": "open", "email": "no address"},
                                        {"type": "open", "email": "a@dst.test", "time": "soon"})
    code, j = d.api("POST", "/v1/events", body, headers=NDJSON)
    assert code == 200, j
    assert j["accepted"] == 33 and j["rejected"] == 4
    assert [e["line"] for e in j["errors"]] == [34, 35, 36, 37]
    p = plan(d, "ann@dst.test", "bob@dst.test")
    assert p["ann@dst.test"]["events"] == 31
    assert p["ann@dst.test"]["reason"] == "recipient-history"
    assert p["ann@dst.test"]["send_at"].startswith("2030-01-08T19:")   # a Tuesday
    assert p["bob@dst.test"]["events"] == 0


def test_deliveries_and_bounces_update_the_record(sluiced, receiver):
    rx = receiver(rcpt_reply=lambda a: "550 5.1.1 no such user" if a.startswith("gone") else None)
    d = sluiced(conf(rx))
    code, j = d.api("POST", "/v1/campaigns",
                    nd({"id": "c", "from": "a@src.test", "text": "hi", "max_delay": "0"},
                       {"email": "ok@dst.test"}, {"email": "gone@dst.test"}), headers=NDJSON)
    assert code == 201, j
    d.wait_event("delivery", recipient="ok@dst.test")
    d.wait_event("bounce", recipient="gone@dst.test")
    wait_until(lambda: d.api("GET", "/v1/campaigns/c")[1]["counts"]["bounced"] == 1, 10,
               what="bounced count")
    st = d.api("GET", "/v1/campaigns/c")[1]
    assert st["counts"]["delivered"] == 1 and st["counts"]["queued"] == 0

    def sends(addr):
        return d.api("GET", "/v1/campaigns/c/recipients/" + addr)[1]["now"]
    wait_until(lambda: sends("ok@dst.test")["sends"] == 1, 10, what="sends counted")
    assert sends("gone@dst.test")["sends"] == 0
    # bounces are kept too (imported ones count the same way)
    code, j = d.api("POST", "/v1/events", nd({"type": "open", "email": "ok@dst.test"}),
                    headers=NDJSON)
    assert code == 200
    assert sends("ok@dst.test")["opens"] == 1 and sends("ok@dst.test")["last_open"]


def test_sluicectl_events_import_and_campaign_commands(sluiced, receiver, tmp_path):
    rx = receiver()
    d = sluiced(conf(rx))
    f = tmp_path / "events.ndjson"
    f.write_text(nd(*[{"type": "open", "email": "cli@dst.test",
                       "time": "2026-10-10T08:%02d:00Z" % i} for i in range(20)]))
    out = d.ctl("events", "import", str(f))
    assert "20 events imported, 0 rejected" in out
    # from a pipe (chunked upload) as well
    out = d.ctl("events", "import", "-", input=nd({"type": "click", "email": "cli@dst.test"}))
    assert "1 events imported" in out

    c = tmp_path / "camp.ndjson"
    c.write_text(nd({"id": "cli", "from": "a@src.test", "text": "Hi {{n}}", "max_delay": "7d",
                     "start_at": "2030-01-07T00:00:00Z"},
                    {"email": "cli@dst.test", "vars": {"n": 1}},
                    {"email": "two@dst.test", "vars": {"n": 2}}))
    lines = d.ctl("campaign", "plan", str(c)).strip().split("\n")
    assert [json.loads(x)["email"] for x in lines] == ["cli@dst.test", "two@dst.test"]
    assert json.loads(lines[0])["send_at"].startswith("2030-01-12T08:")   # a Saturday
    assert d.api("GET", "/v1/campaigns/cli")[0] == 404

    out = d.ctl("campaign", "create", str(c))
    assert "campaign cli created: 2 recipients, 0 duplicates" in out
    out = d.ctl("campaign", "add", "cli", "-", input=nd({"email": "three@dst.test",
                                                         "vars": {"n": 3}}))
    assert "1 recipients added" in out
    st = d.ctl("campaign", "status", "cli", json=True)
    assert st["counts"]["scheduled"] == 3
    out = d.ctl("campaign", "status", "cli")
    assert "scheduled  3" in out
    out = d.ctl("campaign", "explain", "cli", "cli@dst.test")
    assert "reason      recipient-history" in out and "Sat 08:00" in out
    assert "cli" in d.ctl("campaign", "list")
    out = d.ctl("campaign", "cancel", "cli")
    assert "cancelled" in out
    # errors: exit 1 with the daemon's message
    bad = tmp_path / "bad.ndjson"
    bad.write_text(nd({"id": "b", "from": "a@src.test", "text": "{{x}}"}, {"email": "a@dst.test"}))
    d.ctl("campaign", "create", str(bad), check=False)
    assert d.last_ctl.returncode == 1 and "{{x}}" in d.last_ctl.stderr
    time.sleep(0.5)
    assert rx.messages == []


def test_a_large_streamed_campaign(sluiced, receiver, tmp_path):
    """50,000 recipients in one streamed request: all stored, planned and
    counted (the 1M figure comes from the benchmark)."""
    rx = receiver()
    d = sluiced(conf(rx))
    n = 50000
    f = tmp_path / "big.ndjson"
    with open(f, "w") as out:
        out.write(json.dumps({"id": "big", "from": "a@src.test", "text": "Hi {{n}}",
                              "start_at": "2030-01-07T00:00:00Z", "max_delay": "24h"}) + "\n")
        for i in range(n):
            out.write('{"email":"u%d@dst.test","vars":{"n":%d}}\n' % (i, i))
    out = d.ctl("campaign", "create", str(f), timeout=300)
    assert "%d recipients" % n in out
    st = d.api("GET", "/v1/campaigns/big")[1]
    assert st["counts"]["scheduled"] == n and st["recipients"] == n
    e = d.api("GET", "/v1/campaigns/big/recipients/u49999@dst.test")[1]
    assert e["vars"] == {"n": 49999} and e["send_at"].startswith("2030-01-07T")
    assert os.path.getsize(f) > 2000000
