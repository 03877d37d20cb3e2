"""An authoritative DNS server for tests (dnslib for the wire format).

UDP and TCP on the same loopback port, each in its own thread. Records are
added with add(); names are case-insensitive and written without the
trailing dot. A name with no records of any type (and no records below it)
answers NXDOMAIN; a name that has records of other types answers NOERROR
with no answer (NODATA). A CNAME is followed inside the server's own data.
UDP answers larger than the client's buffer (512, or its EDNS size) are
sent truncated (TC=1) so the client retries over TCP.

set_behaviour(name, b) overrides answers for one name: 'nxdomain',
'servfail', 'refused', 'timeout' (never answer) or ('delay', seconds).
Every query received is appended to .queries as (name, type).
"""

import ipaddress
import selectors
import socket
import struct
import threading
import time

from dnslib import (AAAA, CNAME, EDNS0, MX, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel,
                    DNSRecord)

RTYPES = ("A", "AAAA", "MX", "TXT", "CNAME")


def _norm(name):
    name = str(name).strip().lower()
    while name.endswith(".") and name != ".":
        name = name[:-1]
    return name


def _txt_chunks(value):
    if isinstance(value, (list, tuple)):
        parts = [p.encode() if isinstance(p, str) else bytes(p) for p in value]
    else:
        b = value.encode() if isinstance(value, str) else bytes(value)
        parts = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
    for p in parts:
        if len(p) > 255:
            raise ValueError("TXT string longer than 255 bytes")
    return parts


class DNSServer:
    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self.queries = []
        self._records = {}          # name -> list of (rtype, value, ttl)
        self._behaviour = {}        # name -> behaviour
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._conns = set()
        self._udp, self._tcp = self._bind(host, port)
        self.port = self._tcp.getsockname()[1]
        self._sel_wake_r, self._sel_wake_w = socket.socketpair()
        for target, name in ((self._serve_udp, "dns-udp"), (self._serve_tcp, "dns-tcp")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    # ---- data -----------------------------------------------------------
    def add(self, name, rtype, value, ttl=60):
        """Add one record. rtype: A, AAAA, MX (value (pref, host); host '.'
        is a null MX), TXT (str, split into 255-byte strings; or a list
        of strings), CNAME (target name)."""
        rtype = rtype.upper()
        if rtype not in RTYPES:
            raise ValueError("unsupported record type %r" % rtype)
        if rtype == "A":
            ipaddress.IPv4Address(value)
        elif rtype == "AAAA":
            ipaddress.IPv6Address(value)
        elif rtype == "MX":
            pref, host = value
            value = (int(pref), _norm(host) if host != "." else ".")
        elif rtype == "TXT":
            _txt_chunks(value)
        elif rtype == "CNAME":
            value = _norm(value)
        with self._lock:
            self._records.setdefault(_norm(name), []).append((rtype, value, int(ttl)))

    def remove(self, name, rtype=None):
        """Remove every record of a name (or only those of one type)."""
        name = _norm(name)
        with self._lock:
            recs = self._records.get(name, [])
            recs = [r for r in recs if rtype is not None and r[0] != rtype.upper()]
            if recs:
                self._records[name] = recs
            else:
                self._records.pop(name, None)

    def set_behaviour(self, name, behaviour):
        """'nxdomain' | 'servfail' | 'refused' | 'timeout' | ('delay', s) |
        None (back to normal answers)."""
        name = _norm(name)
        if behaviour is not None:
            ok = behaviour in ("nxdomain", "servfail", "refused", "timeout") or (
                isinstance(behaviour, tuple) and len(behaviour) == 2
                and behaviour[0] == "delay" and float(behaviour[1]) >= 0)
            if not ok:
                raise ValueError("unknown DNS behaviour %r" % (behaviour,))
        with self._lock:
            if behaviour is None:
                self._behaviour.pop(name, None)
            else:
                self._behaviour[name] = behaviour

    def txt(self, name):
        """TXT strings of a name joined per record (for dkimpy's dnsfunc):
        bytes of the first TXT record, or None."""
        with self._lock:
            for rtype, value, _ in self._records.get(_norm(name), []):
                if rtype == "TXT":
                    return b"".join(_txt_chunks(value))
        return None

    def queried(self, name, rtype=None):
        """How many queries were received for name (and type)."""
        name = _norm(name)
        return sum(1 for n, t in list(self.queries)
                   if n == name and (rtype is None or t == rtype.upper()))

    # ---- answering --------------------------------------------------------
    def _exists(self, name):
        if name in self._records:
            return True
        suffix = "." + name
        return any(n.endswith(suffix) for n in self._records)

    def _rr(self, name, rtype, value, ttl):
        if rtype == "A":
            rdata = A(value)
        elif rtype == "AAAA":
            rdata = AAAA(value)
        elif rtype == "MX":
            rdata = MX(DNSLabel(".") if value[1] == "." else value[1], value[0])
        elif rtype == "TXT":
            rdata = TXT(_txt_chunks(value))
        else:
            rdata = CNAME(value)
        return RR(name, getattr(QTYPE, rtype), ttl=ttl, rdata=rdata)

    def _soa(self, name):
        labels = name.split(".")
        zone = ".".join(labels[-2:]) if len(labels) >= 2 else name
        return RR(zone, QTYPE.SOA, ttl=60,
                  rdata=SOA("ns." + zone, "hostmaster." + zone, (1, 3600, 600, 86400, 60)))

    def _answer(self, req):
        """The reply to a request, or None to stay silent; and a delay."""
        q = req.q
        qname = _norm(q.qname)
        qtype = QTYPE.get(q.qtype)
        with self._lock:
            self.queries.append((qname, qtype))
            beh = self._behaviour.get(qname)
        delay = 0.0
        if beh == "timeout":
            return None, 0.0
        if isinstance(beh, tuple):
            delay = float(beh[1])
        reply = req.reply()          # QR, AA, RD copied, same id and question
        reply.header.ra = 0
        if any(rr.rtype == QTYPE.OPT for rr in req.ar):
            reply.add_ar(EDNS0(udp_len=4096))
        if beh == "nxdomain":
            reply.header.rcode = RCODE.NXDOMAIN
            return reply, delay
        if beh == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply, delay
        if beh == "refused":
            reply.header.rcode = RCODE.REFUSED
            return reply, delay
        with self._lock:
            name, seen = qname, set()
            while True:
                recs = self._records.get(name, [])
                match = [r for r in recs if qtype == "ANY" or r[0] == qtype]
                cname = [r for r in recs if r[0] == "CNAME"]
                if match:
                    for rtype, value, ttl in match:
                        reply.add_answer(self._rr(name, rtype, value, ttl))
                    break
                if cname and qtype != "CNAME" and name not in seen:
                    seen.add(name)
                    _, target, ttl = cname[0]
                    reply.add_answer(self._rr(name, "CNAME", target, ttl))
                    name = target
                    continue
                if not self._exists(name):
                    # also for a CNAME whose target we do not have (RFC 6604)
                    reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa(name))
                break
        return reply, delay

    @staticmethod
    def _udp_limit(req):
        for rr in req.ar:
            if rr.rtype == QTYPE.OPT:
                return max(512, min(int(rr.rclass), 65535))
        return 512

    # ---- transports ------------------------------------------------------
    @staticmethod
    def _bind(host, port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(50):
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, port))
                udp = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    udp.bind((host, tcp.getsockname()[1]))
                except OSError:
                    udp.close()
                    raise
            except OSError:
                tcp.close()
                if port:
                    raise
                continue
            tcp.listen(64)
            return udp, tcp
        raise OSError("no port free for UDP and TCP on %s" % host)

    def _later(self, delay, fn):
        """Run fn after delay seconds unless the server stops first."""
        def run():
            if not self._stop.wait(delay):
                fn()
        t = threading.Thread(target=run, name="dns-delay", daemon=True)
        t.start()
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve_udp(self):
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ)
        sel.register(self._sel_wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select():
                    if key.fileobj is not self._udp:
                        continue
                    try:
                        data, addr = self._udp.recvfrom(65535)
                    except OSError:
                        continue
                    self._handle_udp(data, addr)
        finally:
            sel.close()

    def _handle_udp(self, data, addr):
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return
        reply, delay = self._answer(req)
        if reply is None:
            return
        wire = reply.pack()
        if len(wire) > self._udp_limit(req):
            reply.rr, reply.auth, reply.ar = [], [], []
            reply.header.tc = 1
            wire = reply.pack()

        def send():
            try:
                self._udp.sendto(wire, addr)
            except OSError:
                pass
        if delay:
            self._later(delay, send)
        else:
            send()

    def _serve_tcp(self):
        sel = selectors.DefaultSelector()
        sel.register(self._tcp, selectors.EVENT_READ)
        sel.register(self._sel_wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select():
                    if key.fileobj is not self._tcp or self._stop.is_set():
                        continue
                    try:
                        conn, _ = self._tcp.accept()
                    except OSError:
                        continue
                    t = threading.Thread(target=self._tcp_conn, args=(conn,),
                                         name="dns-tcp-conn", daemon=True)
                    with self._lock:
                        self._conns.add(conn)
                        self._threads = [x for x in self._threads if x.is_alive()] + [t]
                    t.start()
        finally:
            sel.close()

    @staticmethod
    def _recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _tcp_conn(self, conn):
        try:
            while not self._stop.is_set():
                hdr = self._recv_exact(conn, 2)
                if hdr is None:
                    return
                data = self._recv_exact(conn, struct.unpack("!H", hdr)[0])
                if data is None:
                    return
                try:
                    req = DNSRecord.parse(data)
                except Exception:
                    return
                reply, delay = self._answer(req)
                if reply is None:
                    # 'timeout': hold the connection open, never answer
                    self._stop.wait()
                    return
                if delay and self._stop.wait(delay):
                    return
                wire = reply.pack()
                conn.sendall(struct.pack("!H", len(wire)) + wire)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def stop(self):
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._sel_wake_w.send(b"x")
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)
        self._udp.close()
        self._tcp.close()
        self._sel_wake_r.close()
        self._sel_wake_w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
