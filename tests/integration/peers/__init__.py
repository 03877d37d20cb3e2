"""Test peers for sluice's integration tests: a DNS server, SMTP
receivers, a CA, DKIM helpers and a sluiced runner. conftest.py wraps them
in fixtures; test_peers_selftest.py proves them."""

from .ca import CertPair, TestCA
from .dkimutil import dkim_verify, make_dkim_key
from .dns import DNSServer
from .sluiced import Sluiced, SluicedError, render
from .smtp import Connection, Message, Receiver
from .util import TIMEOUT_SCALE, can_connect, free_port, scaled, wait_until

__all__ = ["CertPair", "TestCA", "dkim_verify", "make_dkim_key", "DNSServer",
           "Sluiced", "SluicedError", "render", "Connection", "Message", "Receiver",
           "TIMEOUT_SCALE", "can_connect", "free_port", "scaled", "wait_until"]
