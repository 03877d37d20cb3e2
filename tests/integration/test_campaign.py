"""Campaigns (issue 9): NDJSON creation with templates and per-recipient
variables, delivery through the normal injection path, send-time
optimisation checked through the explain endpoint and the dry-run plan,
the schedule surviving a restart, cancel, and the 400 for a missing
variable. Real sluiced, real receiver, real LMDB store."""

import datetime
import json
import time

from conftest import BASE_CONF, route_conf, wait_until

# A year's half-life: the synthetic histories below do not fade during a test.
CONF_EXTRA = "engagement-half-life 365d\n"

NDJSON = {"Content-Type": "application/x-ndjson"}


def conf(rx):
    return route_conf(rx, base=BASE_CONF + CONF_EXTRA)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(s):
    return datetime.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)


def next_monday(days_ahead=1):
    """Monday 00:00 UTC at least days_ahead days from now."""
    now = datetime.datetime.now(datetime.timezone.utc)
    d = (now + datetime.timedelta(days=days_ahead)).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
    return d + datetime.timedelta(days=(7 - d.weekday()) % 7)


def ndjson(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def post_nd(d, path, *objs):
    return d.api("POST", path, ndjson(*objs), headers=NDJSON)


def history(email, weekday, hour, n, weeks=3):
    """n opens by email at weekday (0 = Monday) hour:xx UTC over past weeks."""
    now = datetime.datetime.now(datetime.timezone.utc)
    base = (now - datetime.timedelta(days=(now.weekday() - weekday) % 7 or 7)).replace(
        hour=hour, minute=0, second=0, microsecond=0)
    out = []
    for i in range(n):
        t = base - datetime.timedelta(weeks=i % weeks) + datetime.timedelta(minutes=(i * 7) % 60)
        out.append({"type": "open", "email": email, "time": iso(t), "campaign": "imported"})
    return out


def import_events(d, events):
    code, j = post_nd(d, "/v1/events", *events)
    assert code == 200, j
    assert j["accepted"] == len(events) and j["rejected"] == 0, j


def explain(d, cid, email):
    code, j = d.api("GET", "/v1/campaigns/%s/recipients/%s" % (cid, email))
    assert code == 200, j
    return j


def test_delivery_renders_each_recipients_variables(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    camp = {"id": "welcome", "from": "news@src.test", "subject": "Hi {{name}}",
            "text": "Hello {{name}}, your code is {{code}}. {{missing|none}}\n",
            "html": "<p>Hello {{name}}</p>", "headers": {"X-Code": "{{code}}"},
            "max_delay": "0"}
    rcpts = [{"email": "r%d@dst.test" % i,
              "vars": {"name": "N<%d>&" % i, "code": 1000 + i}} for i in range(100)]
    code, j = post_nd(d, "/v1/campaigns", camp, *rcpts)
    assert code == 201, j
    assert j["accepted"] == 100
    msgs = rx.wait_for(100, timeout=60)
    by_rcpt = {m.rcpt_tos[0]: m for m in msgs}
    assert len(by_rcpt) == 100
    for i in range(100):
        m = by_rcpt["r%d@dst.test" % i]
        assert m.mail_from == "news@src.test"
        assert m.header("Subject") == "Hi N<%d>&" % i
        assert m.header("X-Code") == str(1000 + i)
        text = m.msg.get_body(("plain",)).get_content()
        html = m.msg.get_body(("html",)).get_content()
        assert "Hello N<%d>&, your code is %d. none" % (i, 1000 + i) in text
        assert "<p>Hello N&lt;%d&gt;&amp;</p>" % i in html
    evs = d.wait_event("delivery", n=100, campaign="welcome")
    assert all(e.get("scheduled_at") for e in evs)
    wait_until(lambda: d.api("GET", "/v1/campaigns/welcome")[1]["counts"]["delivered"] == 100,
               10, what="delivered count")
    st = d.api("GET", "/v1/campaigns/welcome")[1]
    assert st["counts"]["scheduled"] == 0 and st["counts"]["queued"] == 0
    assert st["recipients"] == 100


def test_more_recipients_in_a_later_batch(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    code, j = post_nd(d, "/v1/campaigns", {"id": "c2", "from": "a@src.test",
                                           "text": "x {{v}}", "max_delay": "0"},
                      {"email": "one@dst.test", "vars": {"v": 1}})
    assert code == 201, j
    code, j = post_nd(d, "/v1/campaigns/c2/recipients",
                      {"email": "two@dst.test", "vars": {"v": 2}},
                      {"email": "ONE@dst.test", "vars": {"v": 3}})
    assert code == 200, j
    assert j["accepted"] == 1 and j["duplicates"] == 1
    msgs = rx.wait_for(2, timeout=20)
    assert sorted(m.rcpt_tos[0] for m in msgs) == ["one@dst.test", "two@dst.test"]
    time.sleep(0.5)
    assert len(rx.messages) == 2


def test_missing_variable_is_a_400_naming_it(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "bad", "from": "a@src.test", "subject": "{{first_name}}",
                       "text": "Hi {{first_name}} {{city|there}}", "max_delay": "0"},
                      {"email": "ok@dst.test", "vars": {"first_name": "Ann"}},
                      {"email": "lacks@dst.test", "vars": {"city": "Oslo"}})
    assert code == 400, j
    assert j["error"]["code"] == "missing_variable"
    assert "first_name" in j["error"]["message"] and "lacks@dst.test" in j["error"]["message"]
    # nothing of it remains, nothing was sent
    assert d.api("GET", "/v1/campaigns/bad")[0] == 404
    time.sleep(1.5)
    assert rx.messages == []
    # the same id can be created properly afterwards
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "bad", "from": "a@src.test", "text": "Hi {{first_name}}",
                       "max_delay": "0"},
                      {"email": "ok@dst.test", "vars": {"first_name": "Ann"}})
    assert code == 201, j
    assert b"Hi Ann" in rx.wait_for(1)[0].data


def test_bad_requests(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    cases = [
        ([{"from": "a@src.test", "text": "x"}], "id"),
        ([{"id": "x", "from": "a@src.test"}], "text"),
        ([{"id": "x", "from": "a@src.test", "text": "{{oops"}], "unclosed"),
        ([{"id": "x", "from": "a@src.test", "text": "x", "max_delay": "9d"}], "max_delay"),
        ([{"id": "x", "from": "a@src.test", "text": "x", "start_at": "tomorrow"}], "start_at"),
        ([{"id": "x", "from": "a@src.test", "text": "x"}, {"email": "not an address"}], "email"),
    ]
    for objs, word in cases:
        code, j = post_nd(d, "/v1/campaigns", *objs)
        assert code == 400, (objs, j)
        assert word in j["error"]["message"], (word, j)
    code, j = post_nd(d, "/v1/campaigns/nosuch/recipients", {"email": "a@dst.test"})
    assert code == 404, j
    assert d.api("GET", "/v1/campaigns/nosuch")[0] == 404


def test_sto_slots_follow_histories_and_priors(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    # Tuesday 19:00, Saturday 08:00, and a "mornings" segment at 07:00
    events = history("tue@dst.test", 1, 19, 40) + history("sat@dst.test", 5, 8, 40)
    for k in range(5):
        for wd in range(7):
            events += history("m%d@dst.test" % k, wd, 7, 3)
    import_events(d, events)
    start = next_monday()
    camp = {"id": "sto", "from": "a@src.test", "text": "hi", "start_at": iso(start),
            "max_delay": "7d"}
    members = [{"email": "m%d@dst.test" % k, "segment": "mornings"} for k in range(5)]
    code, j = post_nd(d, "/v1/campaigns", camp, *members,
                      {"email": "tue@dst.test"}, {"email": "sat@dst.test"},
                      {"email": "new@dst.test", "segment": "mornings"})
    assert code == 201, j
    end = start + datetime.timedelta(days=7)

    e = explain(d, "sto", "tue@dst.test")
    t = parse(e["send_at"])
    assert (t.weekday(), t.hour) == (1, 19) and start <= t < end, e
    assert e["reason"] == "recipient-history" and e["events"] == 40
    assert e["prior_weight"] < 0.5
    assert e["top_slots"][0]["slot"] == "Tue 19:00"

    e = explain(d, "sto", "sat@dst.test")
    t = parse(e["send_at"])
    assert (t.weekday(), t.hour) == (5, 8) and start <= t < end, e
    assert e["reason"] == "recipient-history"

    e = explain(d, "sto", "new@dst.test")
    t = parse(e["send_at"])
    assert t.hour == 7 and start <= t < end, e
    assert e["reason"] == "segment-prior" and e["events"] == 0 and e["prior_weight"] == 1
    assert e["segment"] == "mornings"

    st = d.api("GET", "/v1/campaigns/sto")[1]
    assert st["counts"]["scheduled"] == 8 and st["counts"]["queued"] == 0
    assert rx.messages == []


def test_window_without_the_best_hour_takes_the_best_inside(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    import_events(d, history("a@dst.test", 1, 19, 40) + history("a@dst.test", 1, 14, 12))
    tue10 = next_monday() + datetime.timedelta(days=1, hours=10)
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "w", "from": "a@src.test", "text": "hi", "start_at": iso(tue10),
                       "max_delay": "7h", "dry_run": False},
                      {"email": "a@dst.test"})
    assert code == 201, j
    e = explain(d, "w", "a@dst.test")
    t = parse(e["send_at"])
    assert (t.weekday(), t.hour) == (1, 14), e
    assert tue10 <= t < tue10 + datetime.timedelta(hours=7)
    assert all(parse(s["hour"]) < tue10 + datetime.timedelta(hours=7) for s in e["top_slots"])

    # a window shorter than an hour: the send time stays inside it
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "short", "from": "a@src.test", "text": "hi",
                       "start_at": iso(tue10 + datetime.timedelta(minutes=20)),
                       "max_delay": "15m"},
                      {"email": "a@dst.test"})
    assert code == 201, j
    e = explain(d, "short", "a@dst.test")
    t = parse(e["send_at"])
    s = tue10 + datetime.timedelta(minutes=20)
    assert s <= t <= s + datetime.timedelta(minutes=15), e


def test_dry_run_plans_and_sends_nothing(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    import_events(d, history("tue@dst.test", 1, 19, 40))
    start = next_monday()
    code, plan = post_nd(d, "/v1/campaigns",
                         {"id": "dry", "from": "a@src.test", "text": "hi {{n|x}}",
                          "start_at": iso(start), "max_delay": "7d", "dry_run": True},
                         {"email": "tue@dst.test"}, {"email": "other@dst.test"})
    assert code == 200, plan
    lines = [json.loads(x) for x in plan.strip().split("\n")] if isinstance(plan, str) \
        else [plan]
    assert [x["email"] for x in lines] == ["tue@dst.test", "other@dst.test"]
    t = parse(lines[0]["send_at"])
    assert (t.weekday(), t.hour) == (1, 19) and lines[0]["reason"] == "recipient-history"
    assert lines[1]["reason"] in ("global-prior", "segment-prior")
    # and now (max_delay 0) a dry run would send at once: still nothing is sent
    code, plan = post_nd(d, "/v1/campaigns",
                         {"id": "dry", "from": "a@src.test", "text": "hi", "max_delay": "0",
                          "dry_run": True}, {"email": "x@dst.test"})
    assert code == 200
    assert d.api("GET", "/v1/campaigns/dry")[0] == 404
    time.sleep(1.5)
    assert rx.messages == []
    assert d.events("reception") == []


def test_restart_keeps_the_schedule(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    start = next_monday()
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "later", "from": "a@src.test", "text": "hi", "start_at": iso(start),
                       "max_delay": "24h"},
                      *[{"email": "p%d@dst.test" % i} for i in range(3)])
    assert code == 201, j
    before = {i: explain(d, "later", "p%d@dst.test" % i)["send_at"] for i in range(3)}
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "soon", "from": "a@src.test", "text": "soon", "start_at": iso(soon),
                       "max_delay": "0"}, {"email": "s@dst.test"})
    assert code == 201, j
    d.restart()
    after = {i: explain(d, "later", "p%d@dst.test" % i)["send_at"] for i in range(3)}
    assert before == after
    assert d.api("GET", "/v1/campaigns/later")[1]["counts"]["scheduled"] == 3
    # the one due in seconds is sent by the restarted daemon, at or after its slot
    m = rx.wait_for(1, timeout=20)[0]
    assert m.rcpt_tos == ["s@dst.test"]
    assert m.time >= soon.timestamp() - 1
    ev = d.wait_event("delivery", campaign="soon")[0]
    assert ev["scheduled_at"].startswith(iso(soon)[:19])


def test_cancel(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "c", "from": "a@src.test", "text": "hi",
                       "start_at": iso(next_monday()), "max_delay": "1h"},
                      *[{"email": "p%d@dst.test" % i} for i in range(5)])
    assert code == 201, j
    code, j = d.api("POST", "/v1/campaigns/c/cancel")
    assert code == 200, j
    assert j["state"] == "cancelled" and j["counts"]["cancelled"] == 5
    assert j["counts"]["scheduled"] == 0
    code, j = post_nd(d, "/v1/campaigns/c/recipients", {"email": "late@dst.test"})
    assert code == 409, j
    code, j = d.api("GET", "/v1/campaigns")
    assert [c["id"] for c in j["campaigns"]] == ["c"]


def test_cancel_recalls_queued_messages(sluiced, receiver):
    """Cancel also recalls what the campaign already queued: with the site
    suspended its messages wait in the delivery queue; after the cancel
    none of them is sent, and their recipients count as cancelled once the
    queue lets them go."""
    rx = receiver()
    d = sluiced(conf(rx))
    code, j = d.api("POST", "/v1/messages", {"from": "app@src.test", "to": "first@dst.test",
                                             "subject": "first", "text": "x"})
    assert code == 202, j
    rx.wait_for(1)
    site = wait_until(lambda: next((s["name"] for s in d.api("GET", "/v1/sites")[1]["sites"]
                                    if s.get("route")), None), 10, what="the route site")
    code, j = d.api("POST", "/v1/sites/%s/suspend" % site)
    assert code == 200, j
    code, j = post_nd(d, "/v1/campaigns", {"id": "r", "from": "a@src.test", "text": "hi",
                                          "max_delay": "0"},
                      *[{"email": "q%d@dst.test" % i} for i in range(6)])
    assert code == 201, j
    wait_until(lambda: d.api("GET", "/v1/campaigns/r")[1]["counts"]["queued"] == 6, 10,
               what="6 recipients queued")
    wait_until(lambda: d.api("GET", "/v1/queue")[1]["recipients"] == 6, 10,
               what="6 recipients in the delivery queue")
    code, j = d.api("POST", "/v1/campaigns/r/cancel")
    assert code == 200 and j["recalled"] == 6, j
    # the suspended site's lane lets them go when it runs again
    code, j = d.api("POST", "/v1/sites/%s/resume" % site)
    assert code == 200, j
    wait_until(lambda: d.api("GET", "/v1/queue")[1]["recipients"] == 0, 10,
               what="the queue to empty")
    wait_until(lambda: d.api("GET", "/v1/campaigns/r")[1]["counts"]["cancelled"] == 6, 10,
               what="6 recipients cancelled")
    time.sleep(0.5)
    assert len(rx.messages) == 1
    counts = d.api("GET", "/v1/campaigns/r")[1]["counts"]
    assert counts["queued"] == 0 and counts["delivered"] == 0, counts


def test_cancel_recalls_messages_waiting_to_retry(sluiced, receiver):
    """Recipients deferred by a 4xx wait in a worker's timer heap; cancel
    drops them from there, and nothing is sent when the receiver recovers."""
    rx = receiver(rcpt_reply="451 4.3.0 try again later")
    d = sluiced(BASE_CONF + CONF_EXTRA + "domain * { route [%s]:%d retry-after 1h }\n"
                % (rx.host, rx.port))
    code, j = post_nd(d, "/v1/campaigns", {"id": "w", "from": "a@src.test", "text": "hi",
                                          "max_delay": "0"},
                      *[{"email": "w%d@dst.test" % i} for i in range(3)])
    assert code == 201, j
    wait_until(lambda: len(d.events("transient")) >= 3, 10, what="3 deferrals")
    rx.set(rcpt_reply=None)
    code, j = d.api("POST", "/v1/campaigns/w/cancel")
    assert code == 200 and j["recalled"] == 3, j
    wait_until(lambda: d.api("GET", "/v1/campaigns/w")[1]["counts"]["cancelled"] == 3, 10,
               what="3 recipients cancelled")
    wait_until(lambda: d.api("GET", "/v1/queue")[1]["recipients"] == 0, 10,
               what="the queue to empty")
    assert rx.messages == []


def test_transactional_message_structured_fields(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    code, j = d.api("POST", "/v1/messages", {
        "from": "app@src.test", "to": "user@dst.test", "subject": "Your receipt",
        "text": "Thanks", "html": "<b>Thanks</b>", "headers": {"Reply-To": "help@src.test"}})
    assert code == 202, j
    m = rx.wait_for(1)[0]
    assert m.header("Subject") == "Your receipt" and m.header("Reply-To") == "help@src.test"
    assert m.msg.get_body(("html",)).get_content().strip() == "<b>Thanks</b>"


def test_suppressed_recipients_are_skipped(sluiced, receiver):
    rx = receiver()
    d = sluiced(conf(rx))
    code, _ = d.api("PUT", "/v1/suppression/gone@dst.test", {"reason": "unsubscribe"})
    assert code in (200, 201)
    code, j = post_nd(d, "/v1/campaigns", {"id": "s", "from": "a@src.test", "text": "hi",
                                          "max_delay": "0"},
                      {"email": "gone@dst.test"}, {"email": "here@dst.test"})
    assert code == 201, j
    assert rx.wait_for(1)[0].rcpt_tos == ["here@dst.test"]
    ev = d.wait_event("suppressed", recipient="gone@dst.test")[0]
    assert ev["campaign"] == "s" and ev["reason"] == "unsubscribe"
    wait_until(lambda: d.api("GET", "/v1/campaigns/s")[1]["counts"]["suppressed"] == 1, 10,
               what="suppressed count")
    assert explain(d, "s", "gone@dst.test")["state"] == "suppressed"
    time.sleep(0.5)
    assert len(rx.messages) == 1


def control_connection(d):
    """A keep-alive HTTP/1.1 connection to the control socket."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(20)
            self.sock.connect(d.control)
    return Conn("localhost")


def test_requests_share_a_connection_around_a_streamed_body(sluiced, receiver):
    """The stream filter keeps HTTP/1.1 keep-alive working: an ordinary
    request, a streamed NDJSON one (chunked upload) and another ordinary
    one on the same connection."""
    rx = receiver()
    d = sluiced(conf(rx))
    c = control_connection(d)
    c.request("GET", "/v1/status")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["workers"] == 2

    def body():
        yield (json.dumps({"id": "ka", "from": "a@src.test", "text": "x",
                           "start_at": iso(next_monday()), "max_delay": "1h"}) + "\n").encode()
        for i in range(3000):
            yield ('{"email":"k%d@dst.test"}\n' % i).encode()
    c.request("POST", "/v1/campaigns", body=body(), headers=NDJSON, encode_chunked=True)
    r = c.getresponse()
    j = json.loads(r.read())
    assert r.status == 201 and j["accepted"] == 3000, j
    c.request("GET", "/v1/campaigns/ka")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["counts"]["scheduled"] == 3000
    c.close()


def test_chunked_ordinary_request_then_streamed_on_one_connection(sluiced, receiver):
    """A chunked body that is not streamed (POST /v1/messages) goes to
    evhttp as it came; the filter still finds where it ends, so a streamed
    request and another ordinary one follow on the same connection."""
    rx = receiver()
    d = sluiced(conf(rx))
    c = control_connection(d)
    msg = json.dumps({"from": "a@src.test", "to": "chunk@dst.test", "subject": "c",
                      "text": "x" * 5000}).encode()

    def pieces(b, n):
        for i in range(0, len(b), n):
            yield b[i:i + n]
    for _ in range(2):
        c.request("POST", "/v1/messages", body=pieces(msg, 700),
                  headers={"Content-Type": "application/json"}, encode_chunked=True)
        r = c.getresponse()
        j = json.loads(r.read())
        assert r.status == 202, j
    c.request("POST", "/v1/campaigns", body=pieces(
        (json.dumps({"id": "kc", "from": "a@src.test", "text": "x",
                     "start_at": iso(next_monday()), "max_delay": "1h"}) + "\n" +
         "".join('{"email":"c%d@dst.test"}\n' % i for i in range(500))).encode(), 999),
        headers=NDJSON, encode_chunked=True)
    r = c.getresponse()
    j = json.loads(r.read())
    assert r.status == 201 and j["accepted"] == 500, j
    c.request("GET", "/v1/campaigns/kc")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["counts"]["scheduled"] == 500
    c.close()
    assert len(rx.wait_for(2)) == 2


def test_client_hanging_up_mid_body_leaves_nothing(sluiced, receiver):
    import socket
    rx = receiver()
    d = sluiced(conf(rx))
    first = json.dumps({"id": "gone", "from": "a@src.test", "text": "x", "max_delay": "0"})
    lines = (first + "\n" + "".join('{"email":"g%d@dst.test"}\n' % i
                                    for i in range(25000))).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.control)
    s.sendall(b"POST /v1/campaigns HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n"
              % (len(lines) + 1000))
    s.sendall(lines)         # more than a batch is written, then the client is gone
    time.sleep(1)
    s.close()
    wait_until(lambda: d.api("GET", "/v1/campaigns/gone")[0] == 404, 10,
               what="the half-loaded campaign removed")
    assert "event=campaign-rolled-back campaign=gone" in d.log_text()
    time.sleep(1)
    assert rx.messages == []


def open_load(d, path, first, n, prefix):
    """Start a streamed NDJSON load of n recipients and leave it unfinished
    (the Content-Length promises more): the socket, to close later."""
    import socket
    head = (json.dumps(first) + "\n") if first is not None else ""
    body = (head + "".join('{"email":"%s%d@dst.test"}\n' % (prefix, i)
                           for i in range(n))).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.control)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n"
              % (path.encode(), len(body) + 1000))
    s.sendall(body)
    return s


def scheduled(d, cid):
    code, j = d.api("GET", "/v1/campaigns/" + cid)
    return j["counts"]["scheduled"] if code == 200 else -1


def test_load_cut_off_by_a_crash_is_rolled_back_at_startup(sluiced, receiver):
    """kill -9 in the middle of two loads (a new campaign, and a later
    batch of an existing one), each with a committed batch of 10,000: the
    restarted daemon removes the new campaign whole and the later batch's
    recipients, so the id can be created again, the existing campaign takes
    batches again, and other campaigns are sent."""
    rx = receiver()
    d = sluiced(conf(rx))
    code, j = post_nd(d, "/v1/campaigns",
                      {"id": "part", "from": "a@src.test", "text": "x",
                       "start_at": iso(next_monday()), "max_delay": "1h"},
                      {"email": "kept1@dst.test"}, {"email": "kept2@dst.test"})
    assert code == 201, j
    s1 = open_load(d, "/v1/campaigns", {"id": "whole", "from": "a@src.test", "text": "x",
                                        "max_delay": "0"}, 25000, "w")
    s2 = open_load(d, "/v1/campaigns/part/recipients", None, 25000, "p")
    wait_until(lambda: scheduled(d, "whole") >= 10000 and scheduled(d, "part") >= 10002, 60,
               what="a batch of each load written")
    assert d.api("GET", "/v1/campaigns/whole")[1]["state"] == "loading"
    d.kill9()
    s1.close()
    s2.close()
    d.start()
    log = d.log_text()
    assert "event=campaign-rolled-back campaign=whole batch=1 removed=campaign" in log
    assert "event=campaign-rolled-back campaign=part batch=2 removed=batch" in log
    assert d.api("GET", "/v1/campaigns/whole")[0] == 404
    code, j = d.api("GET", "/v1/campaigns/part")
    assert code == 200 and j["state"] == "active" and j["counts"]["scheduled"] == 2, j
    assert explain(d, "part", "kept1@dst.test")["email"] == "kept1@dst.test"
    code, j = post_nd(d, "/v1/campaigns/part/recipients", {"email": "kept3@dst.test"})
    assert code == 200 and j["accepted"] == 1, j
    code, j = post_nd(d, "/v1/campaigns", {"id": "whole", "from": "a@src.test", "text": "x",
                                           "max_delay": "0"}, {"email": "again@dst.test"})
    assert code == 201, j
    code, j = post_nd(d, "/v1/campaigns", {"id": "other", "from": "a@src.test", "text": "x",
                                           "max_delay": "0"}, {"email": "o@dst.test"})
    assert code == 201, j
    msgs = rx.wait_for(2, timeout=30)
    assert sorted(r for m in msgs for r in m.rcpt_tos) == ["again@dst.test", "o@dst.test"]


def test_a_big_load_in_progress_does_not_hold_back_another_campaign(sluiced, receiver):
    """A due-now load still streaming has 70,000 recipients written (more
    than the scheduler passes over in one tick): they wait, and a campaign
    created meanwhile is sent all the same."""
    rx = receiver()
    d = sluiced(conf(rx))
    s = open_load(d, "/v1/campaigns", {"id": "big", "from": "a@src.test", "text": "x",
                                       "max_delay": "0"}, 75000, "b")
    try:
        wait_until(lambda: scheduled(d, "big") >= 70000, 120, what="70,000 recipients written")
        code, j = post_nd(d, "/v1/campaigns", {"id": "small", "from": "a@src.test",
                                               "text": "x", "max_delay": "0"},
                          {"email": "s@dst.test"})
        assert code == 201, j
        m = rx.wait_for(1, timeout=30)[0]
        assert m.rcpt_tos == ["s@dst.test"]
        assert d.api("GET", "/v1/campaigns/big")[1]["state"] == "loading"
        time.sleep(1)
        assert len(rx.messages) == 1
    finally:
        s.close()
    wait_until(lambda: d.api("GET", "/v1/campaigns/big")[0] == 404, 30,
               what="the unfinished load removed")


def test_dry_run_is_bounded(sluiced, receiver):
    """The plan of a dry run is held for the reply: more than 100,000
    recipients is a 413 (nothing stored or sent); 100,000 are planned."""
    rx = receiver()
    d = sluiced(conf(rx))
    first = {"id": "dry", "from": "a@src.test", "text": "x", "max_delay": "0", "dry_run": True}
    body = json.dumps(first) + "\n" + "".join('{"email":"d%d@dst.test"}\n' % i
                                              for i in range(100001))
    code, j = d.api("POST", "/v1/campaigns", body, headers=NDJSON)
    assert code == 413 and j["error"]["code"] == "too_large", j
    assert "100000" in j["error"]["message"] and "line 100002" in j["error"]["message"]
    body = body[:body.rindex('{"email"')]
    code, plan = d.api("POST", "/v1/campaigns", body, headers=NDJSON)
    assert code == 200
    lines = plan.strip().split("\n")
    assert len(lines) == 100000 and json.loads(lines[-1])["email"] == "d99999@dst.test"
    assert d.api("GET", "/v1/campaigns/dry")[0] == 404
    assert rx.messages == []
