"""Started as root with `user`, sluiced binds first, then runs as that user
and still accepts, spools and delivers."""

import os
import pwd

import pytest

from conftest import route_conf
from peers import wait_until


def ids(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    return []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_drops_to_user_after_binding(sluiced, receiver):
    nobody = pwd.getpwnam("nobody").pw_uid
    rx = receiver()
    d = sluiced(route_conf(rx) + "user nobody\n", start=False)
    # the unprivileged user must be able to reach the spool below the test dir
    changed = []
    p = os.path.abspath(d.tmp)
    while p not in ("/", "/tmp"):
        mode = os.stat(p).st_mode & 0o7777
        if mode & 0o001 == 0:
            os.chmod(p, mode | 0o001)
            changed.append((p, mode))
        p = os.path.dirname(p)
    try:
        d.start()
        # the kernel queues connections from the bind on, so "accepting"
        # comes before the drop: wait for the daemon to say it dropped
        wait_until(lambda: "event=privileges-dropped user=nobody" in d.log_text(), 10,
                   what="privileges dropped")
        assert set(ids(d.pid)) == {nobody}, "real, effective, saved and fs uid"
        assert os.stat(d.spool).st_uid == nobody
        d.send("a@src.test", ["b@dst.test"], "Subject: dropped\r\n\r\nhello\r\n")
        assert rx.wait_for(1)[0].rcpt_tos == ["b@dst.test"]
        d.stop()
    finally:
        for path, mode in changed:
            os.chmod(path, mode)
