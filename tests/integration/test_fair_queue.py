"""Inside a site, campaigns take turns and priority mail goes first. The
order is read at the receiver, with one connection so it is the order of
the transactions."""

import smtplib

import pytest

from conftest import route_conf
from test_control import first_delivery, wait_queued


@pytest.fixture
def held(sluiced, receiver):
    """A daemon with one connection to the receiver and its site suspended."""
    rx = receiver()
    d = sluiced(route_conf(rx, "max-smtp-out 1 max-msg-per-connection 1000"))
    name = first_delivery(d, rx)
    d.ctl("site", name, "suspend")
    return d, rx, name


def send_many(d, specs):
    """specs: (subject, extra header lines); one SMTP session, in order."""
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    for subject, extra in specs:
        s.sendmail("sender@src.test", ["rcpt@dst.test"],
                   "From: sender@src.test\r\nSubject: %s\r\n%s\r\nbody\r\n" % (subject, extra))
    s.quit()


def arrival(rx, n):
    return [m.header("Subject") for m in rx.wait_for(n + 1, timeout=30)[1:]]


def test_small_campaign_not_stuck_behind_big_one(held):
    d, rx, name = held
    send_many(d, [("big %d" % i, "X-Sluice-Campaign: big\r\n") for i in range(40)] +
                 [("small %d" % i, "X-Sluice-Campaign: small\r\n") for i in range(5)])
    wait_queued(d, name, 45)
    d.ctl("site", name, "resume")
    order = arrival(rx, 45)
    small = [i for i, s in enumerate(order) if s.startswith("small")]
    assert len(small) == 5
    # first come first served would put them at 40-44; taking turns puts
    # them among the first dozen
    assert max(small) <= 12, order
    # each campaign keeps its own order
    assert [s for s in order if s.startswith("big")] == ["big %d" % i for i in range(40)]


def test_priority_mail_goes_first(held):
    d, rx, name = held
    send_many(d, [("bulk %d" % i, "") for i in range(30)] +
                 [("urgent %d" % i, "X-Sluice-Priority: transactional\r\n") for i in range(3)])
    wait_queued(d, name, 33)
    d.ctl("site", name, "resume")
    order = arrival(rx, 33)
    assert [s for s in order[:3]] == ["urgent 0", "urgent 1", "urgent 2"], order
