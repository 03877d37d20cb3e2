"""Per-site shaping seen from the receivers: the connection cap holds, and
one held site does not slow another."""

import time

from conftest import BASE_CONF, FAST_RETRY
from peers import scaled
from test_control import wait_queued


def send(d, to, n, tag):
    import smtplib
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    for i in range(n):
        s.sendmail("sender@src.test", [to], "Subject: %s %d\r\n\r\nbody\r\n" % (tag, i))
    s.quit()


def test_max_smtp_out_caps_concurrent_connections(sluiced, receiver):
    # slow final replies make connections overlap, so a cap that did not
    # hold would show at the receiver
    rx = receiver(stall=0.3, stall_on=("DATA",))
    d = sluiced(BASE_CONF + "domain * { route [127.0.0.1]:%d max-smtp-out 2 %s }\n"
                % (rx.port, FAST_RETRY))
    send(d, "r@dst.test", 12, "capped")
    rx.wait_for(12, timeout=scaled(30))
    assert rx.max_concurrent == 2, rx.max_concurrent


def test_suspended_site_does_not_slow_another(sluiced, receiver):
    slow, fast = receiver(), receiver()
    d = sluiced(BASE_CONF +
                "domain held.test { route [127.0.0.1]:%d %s }\n"
                "domain free.test { route [127.0.0.1]:%d %s }\n"
                % (slow.port, FAST_RETRY, fast.port, FAST_RETRY))
    send(d, "a@held.test", 1, "first")
    slow.wait_for(1)
    d.ctl("site", "held.test", "suspend")
    t0 = time.monotonic()
    send(d, "a@held.test", 30, "held")
    send(d, "b@free.test", 30, "free")
    fast.wait_for(30, timeout=scaled(10))
    wait_queued(d, "held.test", 30)
    assert len(slow.messages) == 1
    assert time.monotonic() - t0 < scaled(10)
    d.ctl("site", "held.test", "resume")
    slow.wait_for(31)
