"""Segments over the control API (PUT/GET/DELETE /v1/segments/NAME, GET
/v1/segments) and sluicectl segment, against a real sluiced with its LMDB
store: streamed NDJSON and plain bodies, add and replace, one segment per
recipient, bad lines, restart."""

import json

from conftest import route_conf


def api_ok(d, method, path, body=None, status=200, headers=None):
    code, j = d.api(method, path, body, headers=headers)
    assert code == status, "%s %s -> %d %r" % (method, path, code, j)
    return j


def put(d, name, lines, mode="add", status=200):
    body = "".join(line + "\n" for line in lines)
    return api_ok(d, "PUT", "/v1/segments/%s?mode=%s" % (name, mode), body.encode(),
                  status=status, headers={"Content-Type": "application/x-ndjson"})


def members(d, name, n=1000):
    j = api_ok(d, "GET", "/v1/segments/%s?members=%d" % (name, n))
    return j["members"]


def test_put_add_replace_get_delete(sluiced, receiver):
    d = sluiced(route_conf(receiver()))

    j = put(d, "young", ['{"email": "Ann@Example.com"}', "bob@example.org", "",
                         '{"email": "carol@example.net", "name": "Carol"}'])
    assert (j["lines"], j["written"], j["added"], j["removed"], j["size"]) == (3, 3, 3, 0, 3)
    assert j["mode"] == "add"
    # addresses are keyed lower-cased, as engagement records are
    assert members(d, "young") == ["ann@example.com", "bob@example.org", "carol@example.net"]

    # add: only the new one is new; duplicates inside a body count once
    j = put(d, "young", ["bob@example.org", "dave@example.com", "dave@example.com"])
    assert (j["written"], j["added"], j["size"]) == (3, 1, 4)

    # paging
    j = api_ok(d, "GET", "/v1/segments/young?members=2")
    assert j["members"] == ["ann@example.com", "bob@example.org"] and j["more"] is True
    j = api_ok(d, "GET", "/v1/segments/young?members=2&after=bob@example.org")
    assert j["members"] == ["carol@example.net", "dave@example.com"] and j["more"] is False
    assert j["size"] == 4 and j["prior"] is None

    # replace: exactly the body's members remain
    j = put(d, "young", ["carol@example.net", "erin@example.com"], mode="replace")
    assert (j["added"], j["removed"], j["size"]) == (1, 3, 2)
    assert members(d, "young") == ["carol@example.net", "erin@example.com"]

    # a recipient has one segment: putting it in another moves it
    put(d, "old", ["erin@example.com", "frank@example.com"])
    assert members(d, "young") == ["carol@example.net"]
    assert api_ok(d, "GET", "/v1/recipients/erin@example.com")["segment"] == "old"
    assert api_ok(d, "GET", "/v1/recipients/carol@example.net")["segment"] == "young"

    # a member's opens make the segment's prior (its busiest hours)
    code, j = d.api("POST", "/v1/events", '{"type": "open", "email": "frank@example.com", '
                    '"time": "2026-11-17T09:30:00Z"}\n',
                    headers={"Content-Type": "application/x-ndjson"})
    assert code == 200 and j["accepted"] == 1, j
    prior = api_ok(d, "GET", "/v1/segments/old")["prior"]
    assert prior["events"] == 1 and prior["opens"] == 1
    assert prior["top_hours"][0]["hour"] == "Tue 09:00" and prior["top_hours"][0]["share"] == 1.0

    listing = api_ok(d, "GET", "/v1/segments")["segments"]
    assert listing == [{"segment": "old", "size": 2}, {"segment": "young", "size": 1}]

    j = api_ok(d, "DELETE", "/v1/segments/old")
    assert j == {"segment": "old", "deleted": True, "removed": 2}
    api_ok(d, "GET", "/v1/segments/old", status=404)
    api_ok(d, "DELETE", "/v1/segments/old", status=404)
    assert api_ok(d, "GET", "/v1/recipients/erin@example.com")["segment"] is None


def test_bad_lines_and_names(sluiced, receiver):
    d = sluiced(route_conf(receiver()))
    put(d, "s", ["a@example.com", "b@example.com"])

    # a bad line: 400 naming it; what came before stays; a replace removes nobody
    j = put(d, "s", ["c@example.com", "not-an-address", "d@example.com"], mode="replace",
            status=400)
    assert j["error"]["code"] == "invalid_address"
    assert j["error"]["line"] == 2 and "line 2" in j["error"]["message"]
    assert members(d, "s") == ["a@example.com", "b@example.com", "c@example.com"]

    j = put(d, "s", ['{"mail": "x@example.com"}'], status=400)
    assert j["error"]["code"] == "bad_request" and j["error"]["line"] == 1
    j = put(d, "s", ['{"email": "x@example.com"'], status=400)
    assert j["error"]["code"] == "bad_json"

    for bad in ("%2A", "a%01b"):
        j = api_ok(d, "PUT", "/v1/segments/%s" % bad, b"a@example.com\n", status=400)
        assert j["error"]["code"] == "bad_request"
    j = api_ok(d, "PUT", "/v1/segments/s?mode=merge", b"a@example.com\n", status=400)
    assert "mode" in j["error"]["message"]
    api_ok(d, "GET", "/v1/segments/nothing", status=404)


def test_large_streamed_body_with_sluicectl_and_restart(sluiced, receiver, tmp_path):
    """25,000 members through sluicectl (streamed chunked from a file, three
    store batches), replaced by a smaller set, kept across a restart."""
    d = sluiced(route_conf(receiver()))
    big = tmp_path / "members.ndjson"
    with open(big, "w") as f:
        for i in range(25000):
            f.write(json.dumps({"email": "user%05d@example.com" % i}) + "\n")
    out = d.ctl("segment", "put", "big", str(big))
    assert "25000 addresses read, 25000 new, 0 removed, size 25000" in out
    assert api_ok(d, "GET", "/v1/segments/big")["size"] == 25000

    # --replace from standard input, plain lines
    small = "".join("user%05d@example.com\n" % i for i in range(0, 25000, 1000))
    out = d.ctl("segment", "put", "big", "--replace", "-", input=small)
    assert "25 addresses read, 0 new, 24975 removed, size 25" in out

    out = d.ctl("segment", "get", "big", "--members", "3")
    assert "size          25" in out
    assert "user00000@example.com\nuser01000@example.com\nuser02000@example.com\n..." in out
    assert d.ctl("segment", "list") .split("\n")[1].split() == ["big", "25"]
    assert d.ctl("segment", "list", json=True) == {"segments": [{"segment": "big", "size": 25}]}

    d.restart()
    assert api_ok(d, "GET", "/v1/segments/big")["size"] == 25
    assert api_ok(d, "GET", "/v1/recipients/user03000@example.com")["segment"] == "big"
    out = d.ctl("segment", "delete", "big")
    assert "segment big deleted (25 members)" in out
    p = d.ctl("segment", "get", "big", check=False)
    assert d.last_ctl.returncode == 1 and 'no segment "big"' in d.last_ctl.stderr
