"""What a queued message keeps in memory in a compact form (queue.h): a
Message-ID of sluice's own shape is not stored but rebuilt, the From
domain shares the sender's bytes. The control API, the events and the
receiver must see the real values, while queued, after a restart (the
parallel spool scan loads them) and at delivery."""

from conftest import route_conf
from peers import wait_until


def test_message_id_and_from_domain_survive_packing_and_restart(sluiced, receiver):
    hold = {"on": True}
    rx = receiver(rcpt_reply=lambda a: "451 4.7.1 try later" if hold["on"] else None)
    d = sluiced(route_conf(rx))
    # no Message-ID: sluiced adds <ID@hostname>; From's domain is the sender's
    q1 = d.send("a@src.test", "r1@dst.test",
                "From: <a@src.test>\r\nSubject: generated\r\n\r\nbody\r\n")
    # the client's Message-ID, and a From domain of its own
    q2 = d.send("b@bounce.src.test", "r2@dst.test",
                "From: Someone <x@from.test>\r\nMessage-ID: <client-1@x.test>\r\n"
                "Subject: own\r\n\r\nbody\r\n")
    want = {q1: ("<%s@mta.test>" % q1, "src.test"), q2: ("<client-1@x.test>", "from.test")}

    def check_api():
        for qid, (mid, fdom) in want.items():
            code, m = d.api("GET", "/v1/messages/" + qid)
            assert code == 200, (code, m)
            assert m["meta"]["message_id"] == mid
            assert m["meta"]["from_domain"] == fdom
            assert [r["state"] for r in m["recipients"]] == ["queued"]

    for qid, (mid, _) in want.items():
        ev = d.wait_event("transient", id=qid)[0]
        assert ev["message_id"] == mid
    check_api()

    d.restart()
    check_api()

    hold["on"] = False
    for qid, (mid, _) in want.items():
        ev = d.wait_event("delivery", id=qid, timeout=30)[0]
        assert ev["message_id"] == mid
    msgs = rx.wait_for(2)
    got = {m.rcpt_tos[0]: m.header("Message-ID") for m in msgs}
    assert got == {"r1@dst.test": want[q1][0], "r2@dst.test": want[q2][0]}
    wait_until(lambda: d.api("GET", "/v1/messages/" + q1)[0] == 404, 10,
               what="the delivered message to leave the queue")
