"""How recipients are grouped into sites, seen in the delivery events and
GET /v1/sites: domains sharing MX hosts share one site (MX rollup), a
provider's MX pattern names its site, `mx-rollup no` and a domain's own
block keep a domain apart."""

from conftest import mx_conf


def zone(dns):
    for dom in ("a.test", "b.test"):
        dns.add(dom, "MX", (10, "mx1.hosted.test"))
    dns.add("mx1.hosted.test", "A", "127.0.0.1")
    dns.add("c.test", "MX", (5, "alt1.gmail-smtp-in.l.google.test"))
    dns.add("alt1.gmail-smtp-in.l.google.test", "A", "127.0.0.1")


def sites_of(d, rx, rcpts):
    for r in rcpts:
        d.send("s@src.test", [r], "Subject: %s\r\n\r\nhi\r\n" % r)
    rx.wait_for(len(rcpts))
    return {r: d.wait_event("delivery", recipient=r)[0]["site"] for r in rcpts}


def test_mx_rollup_and_provider(sluiced, receiver, dns_server):
    zone(dns_server)
    rx = receiver()
    d = sluiced(mx_conf(rx) + "provider gmail { mx *.google.test }\n")
    s = sites_of(d, rx, ["x@a.test", "y@b.test", "z@c.test"])
    assert s["x@a.test"] == s["y@b.test"] == "mx:mx1.hosted.test"
    assert s["z@c.test"] == "gmail"
    code, j = d.api("GET", "/v1/sites")
    assert code == 200
    assert {"mx:mx1.hosted.test", "gmail"} <= {x["name"] for x in j["sites"]}


def test_rollup_off_and_own_block(sluiced, receiver, dns_server):
    zone(dns_server)
    rx = receiver()
    d = sluiced(mx_conf(rx, "mx-rollup no") + "domain b.test { max-smtp-out 3 }\n")
    s = sites_of(d, rx, ["x@a.test", "y@b.test"])
    assert s == {"x@a.test": "a.test", "y@b.test": "b.test"}


def test_provider_can_turn_rollup_off(sluiced, receiver, dns_server):
    zone(dns_server)
    rx = receiver()
    d = sluiced(mx_conf(rx) + "provider gmail { mx *.google.test mx-rollup no }\n")
    s = sites_of(d, rx, ["z@c.test", "x@a.test"])
    assert s == {"z@c.test": "c.test", "x@a.test": "mx:mx1.hosted.test"}
