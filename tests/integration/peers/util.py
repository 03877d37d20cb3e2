"""Small helpers shared by the peers: ports, timeouts, polling."""

import os
import socket
import time

# Sanitizer builds run several times slower; every timeout the fixtures use
# (and the ones tests pass to wait_for/wait_event) is multiplied by this.
TIMEOUT_SCALE = 3.0 if os.environ.get("ASAN_OPTIONS") else 1.0


def scaled(seconds):
    return seconds * TIMEOUT_SCALE


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind :0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned) or timeout
    (scaled) passes (TimeoutError naming `what`)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s"
                               % (scaled(timeout), what))
        time.sleep(interval)


def can_connect(host, port, timeout=0.5):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((host, port))
            return True
    except OSError:
        return False
