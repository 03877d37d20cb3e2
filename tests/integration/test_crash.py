"""Crash safety of the spool: a message that got its 250 survives a kill -9
at any moment and is delivered exactly once (or twice, for one that was on
the wire to the receiver at the kill), and no partial message is ever
delivered."""

import glob
import hashlib
import os
import random
import smtplib
import threading
import time

from conftest import route_conf
from peers import scaled

SESSIONS = 20
PER_SESSION = 100


def body_for(token):
    # Deterministic, multi-line, with dot-stuffing bait, so a truncated or
    # mixed-up message cannot match.
    h = hashlib.sha256(token.encode()).hexdigest()
    lines = ["line %03d %s" % (i, h) for i in range(60)]
    lines.insert(30, ".leading dot " + token)
    return "\r\n".join(lines) + "\r\n"


def message_for(token):
    return ("From: crash@src.test\r\nTo: rcpt@dst.test\r\n"
            "Subject: crash %s\r\nX-Token: %s\r\n\r\n%s" % (token, token, body_for(token)))


def inject(port, sid, acked, errors):
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    except OSError:
        return
    try:
        for i in range(PER_SESSION):
            token = "s%02d-m%03d" % (sid, i)
            s.sendmail("crash@src.test", ["rcpt@dst.test"], message_for(token))
            acked.append(token)         # only after the 250
    except (smtplib.SMTPException, OSError) as e:
        errors.append(repr(e))
    finally:
        try:
            s.close()
        except OSError:
            pass


def test_kill9_during_injection(sluiced, receiver):
    seed = int(time.time())
    rnd = random.Random(seed)
    rx = receiver()
    d = sluiced(route_conf(rx, "max-smtp-out 10"))
    acked, errors = [], []
    threads = [threading.Thread(target=inject, args=(d.port, i, acked, errors))
               for i in range(SESSIONS)]
    for t in threads:
        t.start()
    # kill at a random moment while mail is flowing (after the first acks)
    deadline = time.time() + scaled(30)
    while len(acked) < 50 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(rnd.uniform(0.0, 1.0))
    d.kill9()
    for t in threads:
        t.join(scaled(60))
    at_kill = list(acked)
    assert at_kill, "nothing was acknowledged before the kill (seed %d)" % seed

    d.start()
    expect = set(at_kill)

    def received_tokens():
        seen = {}
        for m in rx.messages:
            tok = m.header("X-Token")
            seen[tok] = seen.get(tok, 0) + 1
        return seen

    deadline = time.time() + scaled(90)
    while time.time() < deadline:
        seen = received_tokens()
        if expect <= set(seen):
            break
        time.sleep(0.2)
    seen = received_tokens()
    missing = sorted(expect - set(seen))
    assert not missing, "seed %d: %d acknowledged messages lost, e.g. %s" % (
        seed, len(missing), missing[:5])

    # no partial or corrupted message, acknowledged or not
    for m in rx.messages:
        tok = m.header("X-Token")
        body = m.data.split(b"\r\n\r\n", 1)[1].decode()
        assert body == body_for(tok), "seed %d: message %s arrived damaged" % (seed, tok)

    # duplicates only from the in-flight window at the kill: bounded by the
    # connections that could have been waiting for a final reply
    dups = {t: n for t, n in seen.items() if n > 1}
    assert all(n == 2 for n in dups.values()), "seed %d: delivered 3+ times: %s" % (seed, dups)
    assert len(dups) <= 10, "seed %d: %d duplicates (max-smtp-out is 10)" % (seed, len(dups))

    # and after the restart the spool drains completely
    def spooled():
        # spool files are slots: a spare one starts with "XLUICE", a
        # message with "SLUICE"
        def is_message(f):
            try:
                with open(f, "rb") as fh:
                    return fh.read(6) == b"SLUICE"
            except FileNotFoundError:
                return False
        return [f for f in glob.glob(os.path.join(d.spool, "q", "*", "*")) if is_message(f)]
    deadline = time.time() + scaled(30)
    while spooled() and time.time() < deadline:
        time.sleep(0.2)
    assert not spooled(), "seed %d: spool not drained: %s" % (seed, spooled()[:3])
    d.stop()
