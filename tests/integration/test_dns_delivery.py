"""Direct (MX) delivery: c-ares against the test DNS server, MX order and
fallback, implicit MX, null MX, NXDOMAIN, SERVFAIL and timeouts, source
binding, and `tls verify` against the MX name. Every MX host listens on
its own 127.0.0.x address, all on one port (smtp-port)."""

import time

from conftest import BASE_CONF, mx_conf
from peers import free_port

SOURCES = """\
source s1 { address 127.0.0.2 ehlo s1.test }
source s2 { address 127.0.0.3 ehlo s2.test }
pool default { source s1 weight 1 }
pool other { source s2 weight 1 }
"""


def msg(subject="test", frm="a@src.test", to="b@dst.test"):
    return "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nhello\r\n" % (frm, to, subject)


def two_mx(dns, receiver, domain="dst.test", **behaviour1):
    """MX 10 mx1 (127.0.0.11), MX 20 mx2 (127.0.0.12), receivers on both."""
    rx1 = receiver(host="127.0.0.11", **behaviour1)
    rx2 = receiver(host="127.0.0.12", port=rx1.port)
    dns.add(domain, "MX", (20, "mx2." + domain))
    dns.add(domain, "MX", (10, "mx1." + domain))
    dns.add("mx1." + domain, "A", "127.0.0.11")
    dns.add("mx2." + domain, "A", "127.0.0.12")
    return rx1, rx2


def test_mx_preference_order(sluiced, receiver, dns_server):
    rx1, rx2 = two_mx(dns_server, receiver)
    d = sluiced(mx_conf(rx1))
    qid = d.send("a@src.test", "b@dst.test", msg())
    m = rx1.wait_for(1)[0]
    assert m.rcpt_tos == ["b@dst.test"]
    ev = d.wait_event("delivery", id=qid)[0]
    assert ev["mx"] == "mx1.dst.test" and ev["mx_ip"] == "127.0.0.11"
    assert rx2.connections == []
    assert dns_server.queried("dst.test", "MX") >= 1


def test_fallback_when_first_mx_refuses_connections(sluiced, receiver, dns_server):
    rx2 = receiver(host="127.0.0.12")
    dns_server.add("dst.test", "MX", (10, "mx1.dst.test"))
    dns_server.add("dst.test", "MX", (20, "mx2.dst.test"))
    dns_server.add("mx1.dst.test", "A", "127.0.0.13")       # nobody listens there
    dns_server.add("mx2.dst.test", "A", "127.0.0.12")
    d = sluiced(mx_conf(rx2))
    qid = d.send("a@src.test", "b@dst.test", msg())
    rx2.wait_for(1)
    ev = d.wait_event("delivery", id=qid)[0]
    assert ev["mx"] == "mx2.dst.test"
    assert ev["attempt"] == 1


def test_fallback_when_first_mx_says_421(sluiced, receiver, dns_server):
    rx1, rx2 = two_mx(dns_server, receiver, greeting="421 4.3.2 not now")
    d = sluiced(mx_conf(rx1))
    d.send("a@src.test", "b@dst.test", msg())
    rx2.wait_for(1)
    assert len(rx1.connections) >= 1          # tried first
    assert rx1.messages == []
    assert d.wait_event("delivery")[0]["mx"] == "mx2.dst.test"


def test_every_mx_down_is_transient(sluiced, receiver, dns_server):
    port = free_port()
    dns_server.add("dst.test", "MX", (10, "mx1.dst.test"))
    dns_server.add("mx1.dst.test", "A", "127.0.0.13")
    d = sluiced(mx_conf(port))
    qid = d.send("a@src.test", "b@dst.test", msg())
    t = d.wait_event("transient", id=qid)[0]
    assert t["code"] // 100 == 4


def test_implicit_mx(sluiced, receiver, dns_server):
    rx = receiver(host="127.0.0.14")
    dns_server.add("plain.test", "A", "127.0.0.14")
    d = sluiced(mx_conf(rx))
    d.send("a@src.test", "b@plain.test", msg(to="b@plain.test"))
    assert rx.wait_for(1)[0].rcpt_tos == ["b@plain.test"]
    assert d.wait_event("delivery")[0]["mx_ip"] == "127.0.0.14"


def test_null_mx_bounces(sluiced, receiver, dns_server):
    rx = receiver()
    dns_server.add("nomail.test", "MX", (0, "."))
    dns_server.add("nomail.test", "A", "127.0.0.1")
    d = sluiced(mx_conf(rx))
    qid = d.send("", "b@nomail.test", msg(to="b@nomail.test"))
    ev = d.wait_event("bounce", id=qid)[0]
    assert ev["status"] == "5.1.10"
    assert rx.connections == []


def test_nxdomain_bounces(sluiced, receiver, dns_server):
    rx = receiver()
    d = sluiced(mx_conf(rx))
    qid = d.send("", "b@missing.test", msg(to="b@missing.test"))
    ev = d.wait_event("bounce", id=qid)[0]
    assert ev["status"] == "5.1.2"
    assert rx.connections == []


def test_servfail_is_transient_then_delivers(sluiced, receiver, dns_server):
    rx = receiver(host="127.0.0.15")
    dns_server.add("flaky.test", "MX", (10, "mx.flaky.test"))
    dns_server.add("mx.flaky.test", "A", "127.0.0.15")
    dns_server.set_behaviour("flaky.test", "servfail")
    d = sluiced(mx_conf(rx))
    qid = d.send("a@src.test", "b@flaky.test", msg(to="b@flaky.test"))
    t = d.wait_event("transient", id=qid)[0]
    assert t["code"] // 100 == 4
    assert rx.connections == []
    dns_server.set_behaviour("flaky.test", None)
    d.wait_event("delivery", id=qid, timeout=20)
    assert rx.wait_for(1)[0].rcpt_tos == ["b@flaky.test"]


def test_dns_timeout_is_transient(sluiced, receiver, dns_server):
    rx = receiver()
    dns_server.set_behaviour("slow.test", "timeout")
    d = sluiced(mx_conf(rx))
    qid = d.send("a@src.test", "b@slow.test", msg(to="b@slow.test"))
    t = d.wait_event("transient", id=qid, timeout=30)[0]
    assert t["code"] // 100 == 4


def test_mx_without_address_is_skipped(sluiced, receiver, dns_server):
    rx = receiver(host="127.0.0.16")
    dns_server.add("half.test", "MX", (10, "gone.half.test"))
    dns_server.add("half.test", "MX", (20, "mx.half.test"))
    dns_server.add("mx.half.test", "A", "127.0.0.16")
    d = sluiced(mx_conf(rx))
    d.send("a@src.test", "b@half.test", msg(to="b@half.test"))
    rx.wait_for(1)
    assert d.wait_event("delivery")[0]["mx"] == "mx.half.test"


def test_source_addresses(sluiced, receiver, dns_server):
    rx = receiver(host="127.0.0.17")
    dns_server.add("src2.test", "MX", (10, "mx.src2.test"))
    dns_server.add("mx.src2.test", "A", "127.0.0.17")
    d = sluiced(mx_conf(rx, base=BASE_CONF + SOURCES))
    d.send("a@src.test", "one@src2.test", msg(to="one@src2.test"))
    d.send("a@src.test", "two@src2.test",
           "X-Sluice-Pool: other\r\n" + msg(to="two@src2.test"))
    msgs = rx.wait_for(2)
    peers = {m.rcpt_tos[0]: (m.peer[0], m.ehlo_name) for m in msgs}
    assert peers["one@src2.test"] == ("127.0.0.2", "s1.test")
    assert peers["two@src2.test"] == ("127.0.0.3", "s2.test")


def test_one_lookup_for_many_recipients(sluiced, receiver, dns_server):
    rx = receiver(host="127.0.0.18")
    dns_server.add("many.test", "MX", (10, "mx.many.test"), ttl=300)
    dns_server.add("mx.many.test", "A", "127.0.0.18", ttl=300)
    d = sluiced(mx_conf(rx, base=BASE_CONF.replace("workers 2", "workers 1")))
    for i in range(5):
        d.send("a@src.test", "r%d@many.test" % i, msg(to="r%d@many.test" % i))
    d.wait_event("delivery", n=5)
    # cached (or merged): one MX query for five messages on one worker
    assert dns_server.queried("many.test", "MX") == 1


def test_tls_verify_against_mx_name(sluiced, receiver, dns_server, test_ca, monkeypatch):
    monkeypatch.setenv("SLUICE_CA_FILE", test_ca.ca_cert)
    good = test_ca.make_cert(["mx.secure.test"])
    rx = receiver(host="127.0.0.19", starttls=(good.cert, good.key))
    dns_server.add("secure.test", "MX", (10, "mx.secure.test"))
    dns_server.add("mx.secure.test", "A", "127.0.0.19")
    d = sluiced(mx_conf(rx) + "domain secure.test { tls verify }\n")
    d.send("a@src.test", "b@secure.test", msg(to="b@secure.test"))
    assert rx.wait_for(1)[0].tls


def test_tls_verify_refuses_wrong_mx_name(sluiced, receiver, dns_server, test_ca,
                                          monkeypatch):
    monkeypatch.setenv("SLUICE_CA_FILE", test_ca.ca_cert)
    bad = test_ca.make_cert(["mx.elsewhere.example"])
    rx = receiver(host="127.0.0.20", starttls=(bad.cert, bad.key))
    dns_server.add("strict.test", "MX", (10, "mx.strict.test"))
    dns_server.add("mx.strict.test", "A", "127.0.0.20")
    d = sluiced(mx_conf(rx) + "domain strict.test { tls verify }\n")
    qid = d.send("a@src.test", "b@strict.test", msg(to="b@strict.test"))
    t = d.wait_event("transient", id=qid)[0]
    assert t["status"] == "4.7.5"
    time.sleep(0.5)
    assert rx.messages == []
