"""An SMTP receiver for tests: a small asyncio server on its own loop in a
thread, written directly on asyncio.Protocol (not aiosmtpd) because the
tests need what aiosmtpd hides: the packet boundaries commands arrive in
(to check client pipelining), a connection dropped in the middle of DATA,
a 421 greeting, stalls before chosen replies, and STARTTLS on the same
protocol object so those records survive the upgrade.

Receiver(**behaviour) listens on host:port and records, per accepted
message, a Message (envelope, data exactly as received after un-dot-
stuffing, TLS, EHLO name, client address) and, per connection, a
Connection (commands and the reads they arrived in, replies sent).

Behaviour (all keyword arguments, changeable later with rx.set(...)):
  greeting             None = "220 <hostname> ESMTP"; a 2xx text replaces it;
                       a 4xx/5xx text is sent and the connection closed
  close_after_greeting send the 220, then close
  ehlo                 False: EHLO gets 502, the client must use HELO
  pipelining, smtputf8 advertise PIPELINING / SMTPUTF8 (default True)
  starttls             (cert, key): advertise STARTTLS
  require_starttls     MAIL before STARTTLS gets 530 5.7.0
  auth                 {user: password}: advertise AUTH PLAIN LOGIN
  require_auth         MAIL before AUTH gets 530 5.7.0
  size                 advertise SIZE n and refuse bigger messages (552)
  mail_reply           reply to MAIL (text, or callable(addr) -> text|None)
  rcpt_reply           reply to RCPT (text, or callable(addr) -> text|None)
  data_reply           final reply after the dot (text, or
                       callable(Message) -> text|None)
  drop_in_data         close without a reply once DATA content arrived
                       (True: any bytes; an int: at least that many)
  stall                seconds to sleep before the replies in stall_on
  stall_on             subset of GREETING EHLO MAIL RCPT DATA DOT;
                       default ("RCPT", "DOT"): RCPT and the final reply
A reply text may hold several lines ("250-a\\n250 b"). None means default.
"""

import asyncio
import base64
import bisect
import email
import email.policy
import ssl
import threading
import time

from .util import scaled

MAX_LINE = 1 << 20
STALL_POINTS = ("GREETING", "EHLO", "MAIL", "RCPT", "DATA", "DOT")
DEFAULTS = dict(
    greeting=None, close_after_greeting=False, ehlo=True, pipelining=True,
    smtputf8=True, starttls=None, require_starttls=False, auth=None,
    require_auth=False, size=None, mail_reply=None, rcpt_reply=None,
    data_reply=None, drop_in_data=False, stall=None, stall_on=("RCPT", "DOT"),
    hostname="mx.test",
)


class _Closed(Exception):
    pass


class Message:
    """One message the receiver accepted (or refused after DATA)."""

    def __init__(self, conn, mail_from, mail_options, rcpt_tos, rcpt_options, data):
        self.conn = conn
        self.peer = conn.peer
        self.ehlo_name = conn.ehlo_name
        self.tls = conn.tls
        self.tls_version = conn.tls_version
        self.auth_user = conn.auth_user
        self.mail_from = mail_from
        self.mail_options = mail_options
        self.rcpt_tos = rcpt_tos            # accepted recipients, in order
        self.rcpt_options = rcpt_options    # one list of options per rcpt_tos entry
        self.data = data                    # bytes, CRLF, un-dot-stuffed
        self.reply = None                   # final reply we sent
        self.time = time.time()

    @property
    def msg(self):
        """The data parsed as an email.message.EmailMessage."""
        return email.message_from_bytes(self.data, policy=email.policy.default)

    def header(self, name):
        """First value of a header (unfolded str) or None."""
        v = self.msg[name]
        return None if v is None else str(v)

    def __repr__(self):
        return "<Message from=%r to=%r %d bytes tls=%s peer=%s>" % (
            self.mail_from, self.rcpt_tos, len(self.data), self.tls, self.peer)


class Connection:
    """One client connection as the receiver saw it."""

    def __init__(self, peer):
        self.peer = peer                    # (ip, port)
        self.ehlo_name = None
        self.tls = False
        self.tls_version = None
        self.auth_user = None
        self.commands = []                  # command lines, without CRLF
        self.packets = []                   # command lines grouped by the read they arrived in
        self.replies = []                   # (command verb, reply text) in order
        self.rejected_rcpts = []            # (addr, reply)
        self.dropped_in_data = False
        self.starttls_injection = False     # plaintext pipelined after STARTTLS
        self.closed = False
        self.opened_at = time.time()

    def pipelined(self, *verbs):
        """True if some single read carried all of these verbs (e.g.
        'MAIL', 'RCPT', 'DATA')."""
        want = {v.upper() for v in verbs}
        for p in self.packets:
            got = {c.split(" ", 1)[0].split(":", 1)[0].upper() for c in p}
            if want <= got:
                return True
        return False

    def __repr__(self):
        return "<Connection peer=%s tls=%s commands=%d>" % (
            self.peer, self.tls, len(self.commands))


def _code(reply):
    try:
        return int(reply[:3])
    except (TypeError, ValueError):
        return 0


def _addr(arg, keyword):
    """'FROM:<a@b> SIZE=10' -> ('a@b', ['SIZE=10']) or None."""
    if not arg.upper().startswith(keyword + ":"):
        return None
    rest = arg[len(keyword) + 1:].strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            return None
        addr, params = rest[1:end], rest[end + 1:].split()
    else:
        parts = rest.split()
        if not parts:
            return None
        addr, params = parts[0], parts[1:]
    return addr, params


class _Session(asyncio.Protocol):
    def __init__(self, rx):
        self.rx = rx
        self.loop = rx._loop
        self.buf = bytearray()
        self.total = 0                      # bytes received (plaintext)
        self.consumed = 0                   # bytes taken from buf
        self.chunk_ends = []                # offsets where each read ended
        self.last_packet = -1
        self.eof = False
        self.waiter = None
        self.transport = None
        self.conn = None
        self.task = None

    # ---- asyncio.Protocol ------------------------------------------------
    def connection_made(self, transport):
        if self.transport is not None:      # start_tls re-attaches us: keep state
            return
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.conn = Connection((peer[0], peer[1]))
        self.rx._opened(self)
        self.task = self.loop.create_task(self.run())

    def data_received(self, data):
        self.buf += data
        self.total += len(data)
        self.chunk_ends.append(self.total)
        self._wake()

    def eof_received(self):
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc):
        self.eof = True
        self._wake()

    def _wake(self):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # ---- I/O helpers --------------------------------------------------------
    async def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                self.consumed += i + 1
                return line
            if self.eof:
                raise _Closed()
            if len(self.buf) > MAX_LINE:
                self.send("500 5.5.2 Line too long")
                raise _Closed()
            self.waiter = self.loop.create_future()
            await self.waiter
            self.waiter = None

    def _packet_of(self, end_offset):
        return bisect.bisect_left(self.chunk_ends, end_offset)

    def send(self, text, verb=None):
        lines = text.replace("\r\n", "\n").split("\n")
        self.transport.write("".join(l + "\r\n" for l in lines).encode())
        self.conn.replies.append((verb, text))

    async def stall(self, point):
        b = self.rx._b
        if b["stall"] and point in b["stall_on"]:
            await asyncio.sleep(b["stall"])
            if self.eof:
                raise _Closed()

    # ---- the session ------------------------------------------------------
    async def run(self):
        try:
            await self.session()
        except (_Closed, ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as e:              # a bug in this fixture: surface it
            self.rx._error("session %s: %r" % (self.conn.peer, e))
        finally:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()
            self.rx._closed(self)

    def reset(self):
        self.mail_from = None
        self.mail_options = []
        self.rcpts = []
        self.rcpt_options = []

    async def session(self):
        rx, b = self.rx, self.rx._b
        self.reset()
        await self.stall("GREETING")
        g = b["greeting"]
        if g is not None and not g.startswith("2"):
            self.send(g, "GREETING")
            raise _Closed()
        self.send(g or "220 %s ESMTP sluice-test" % b["hostname"], "GREETING")
        if b["close_after_greeting"]:
            raise _Closed()
        while True:
            raw = await self.readline()
            line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            self.conn.commands.append(line)
            pkt = self._packet_of(self.consumed)
            if pkt == self.last_packet and self.conn.packets:
                self.conn.packets[-1].append(line)
            else:
                self.conn.packets.append([line])
                self.last_packet = pkt
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            handler = getattr(self, "cmd_" + verb, None)
            if handler is None or not verb.isalpha():
                self.send("500 5.5.2 Command unrecognized", verb)
                continue
            if await handler(arg.strip()) is False:
                return

    def extensions(self):
        b = self.rx._b
        ext = ["8BITMIME", "ENHANCEDSTATUSCODES"]
        if b["size"]:
            ext.append("SIZE %d" % b["size"])
        else:
            ext.append("SIZE")
        if b["pipelining"]:
            ext.append("PIPELINING")
        if b["smtputf8"]:
            ext.append("SMTPUTF8")
        if b["starttls"] and not self.conn.tls:
            ext.append("STARTTLS")
        if b["auth"]:
            ext.append("AUTH PLAIN LOGIN")
        return ext

    async def cmd_EHLO(self, arg):
        b = self.rx._b
        await self.stall("EHLO")
        if not b["ehlo"]:
            self.send("502 5.5.1 EHLO not implemented", "EHLO")
            return
        if not arg:
            self.send("501 5.5.4 Syntax: EHLO hostname", "EHLO")
            return
        self.conn.ehlo_name = arg
        self.reset()
        lines = ["250-%s" % b["hostname"]] + ["250-" + e for e in self.extensions()]
        lines[-1] = "250 " + lines[-1][4:]
        self.send("\n".join(lines), "EHLO")

    async def cmd_HELO(self, arg):
        await self.stall("EHLO")
        if not arg:
            self.send("501 5.5.4 Syntax: HELO hostname", "HELO")
            return
        self.conn.ehlo_name = arg
        self.reset()
        self.send("250 %s" % self.rx._b["hostname"], "HELO")

    async def cmd_STARTTLS(self, arg):
        b = self.rx._b
        if not b["starttls"] or self.conn.tls:
            self.send("502 5.5.1 STARTTLS not available", "STARTTLS")
            return
        if self.conn.ehlo_name is None:
            self.send("503 5.5.1 EHLO first", "STARTTLS")
            return
        if self.buf:                        # RFC 3207 5: discard, remember
            self.conn.starttls_injection = True
            self.consumed += len(self.buf)
            del self.buf[:]
        self.send("220 2.0.0 Ready to start TLS", "STARTTLS")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(b["starttls"][0], b["starttls"][1])
        try:
            tr = await asyncio.wait_for(
                self.loop.start_tls(self.transport, self, ctx, server_side=True),
                timeout=scaled(10))
        except (ssl.SSLError, ConnectionError, asyncio.TimeoutError, OSError) as e:
            self.conn.tls_error = repr(e)
            raise _Closed()
        self.transport = tr
        self.conn.tls = True
        obj = tr.get_extra_info("ssl_object")
        self.conn.tls_version = obj.version() if obj is not None else None
        self.conn.ehlo_name = None
        self.reset()

    async def cmd_AUTH(self, arg):
        users = self.rx._b["auth"]
        if not users:
            self.send("502 5.5.1 AUTH not available", "AUTH")
            return
        if self.conn.auth_user is not None:
            self.send("503 5.5.1 Already authenticated", "AUTH")
            return
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        try:
            if mech == "PLAIN":
                if not initial:
                    self.send("334 ", "AUTH")
                    initial = (await self.readline()).strip().decode()
                _, user, pw = base64.b64decode(initial).decode().split("\0")
            elif mech == "LOGIN":
                if initial:
                    user = base64.b64decode(initial).decode()
                else:
                    self.send("334 VXNlcm5hbWU6", "AUTH")
                    user = base64.b64decode((await self.readline()).strip()).decode()
                self.send("334 UGFzc3dvcmQ6", "AUTH")
                pw = base64.b64decode((await self.readline()).strip()).decode()
            else:
                self.send("504 5.5.4 Unrecognized authentication type", "AUTH")
                return
        except (ValueError, UnicodeDecodeError):
            self.send("501 5.5.2 Cannot decode response", "AUTH")
            return
        if users.get(user) == pw:
            self.conn.auth_user = user
            self.send("235 2.7.0 Authentication successful", "AUTH")
        else:
            self.send("535 5.7.8 Authentication credentials invalid", "AUTH")

    @staticmethod
    def _pick(setting, arg):
        return setting(arg) if callable(setting) else setting

    async def cmd_MAIL(self, arg):
        b = self.rx._b
        await self.stall("MAIL")
        if self.conn.ehlo_name is None:
            self.send("503 5.5.1 Send EHLO/HELO first", "MAIL")
            return
        if b["require_starttls"] and not self.conn.tls:
            self.send("530 5.7.0 Must issue a STARTTLS command first", "MAIL")
            return
        if b["require_auth"] and self.conn.auth_user is None:
            self.send("530 5.7.0 Authentication required", "MAIL")
            return
        if self.mail_from is not None:
            self.send("503 5.5.1 Nested MAIL command", "MAIL")
            return
        parsed = _addr(arg, "FROM")
        if parsed is None:
            self.send("501 5.5.4 Syntax: MAIL FROM:<address>", "MAIL")
            return
        reply = self._pick(b["mail_reply"], parsed[0]) or "250 2.1.0 Ok"
        if _code(reply) // 100 == 2:
            self.mail_from, self.mail_options = parsed
        self.send(reply, "MAIL")

    async def cmd_RCPT(self, arg):
        b = self.rx._b
        await self.stall("RCPT")
        if self.mail_from is None:
            self.send("503 5.5.1 Need MAIL before RCPT", "RCPT")
            return
        parsed = _addr(arg, "TO")
        if parsed is None:
            self.send("501 5.5.4 Syntax: RCPT TO:<address>", "RCPT")
            return
        reply = self._pick(b["rcpt_reply"], parsed[0]) or "250 2.1.5 Ok"
        if _code(reply) // 100 == 2:
            self.rcpts.append(parsed[0])
            self.rcpt_options.append(parsed[1])
        else:
            self.conn.rejected_rcpts.append((parsed[0], reply))
        self.send(reply, "RCPT")

    async def cmd_DATA(self, arg):
        b = self.rx._b
        await self.stall("DATA")
        if self.mail_from is None:
            self.send("503 5.5.1 Need MAIL command", "DATA")
            return
        if not self.rcpts:
            self.send("554 5.5.1 No valid recipients", "DATA")
            return
        self.send("354 End data with <CR><LF>.<CR><LF>", "DATA")
        drop = b["drop_in_data"]
        drop_at = 0 if not drop else (1 if drop is True else int(drop))
        start = self.consumed
        data = bytearray()
        while True:
            if drop_at and self.consumed + len(self.buf) - start >= drop_at:
                self.conn.dropped_in_data = True
                self.rx._dropped(self.conn)
                self.transport.close()
                raise _Closed()
            line = await self.readline()
            if line == b".\r\n" or line == b".\n":
                break
            if line.startswith(b"."):
                line = line[1:]
            data += line
        msg = Message(self.conn, self.mail_from, self.mail_options,
                      self.rcpts, self.rcpt_options, bytes(data))
        self.reset()
        await self.stall("DOT")
        if b["size"] and len(msg.data) > b["size"]:
            reply = "552 5.3.4 Message too big"
        else:
            reply = self._pick(b["data_reply"], msg) or \
                "250 2.0.0 Ok: queued as %d" % self.rx._next_id()
        msg.reply = reply
        self.rx._message(msg)
        self.send(reply, "DOT")

    async def cmd_RSET(self, arg):
        self.reset()
        self.send("250 2.0.0 Ok", "RSET")

    async def cmd_NOOP(self, arg):
        self.send("250 2.0.0 Ok", "NOOP")

    async def cmd_VRFY(self, arg):
        self.send("252 2.5.0 Cannot VRFY user", "VRFY")

    async def cmd_QUIT(self, arg):
        self.send("221 2.0.0 Bye", "QUIT")
        return False


class Receiver:
    """See the module docstring. Starts listening in the constructor."""

    def __init__(self, host="127.0.0.1", port=None, **behaviour):
        self.host = host
        self._b = dict(DEFAULTS)
        self.set(**behaviour)
        self.messages = []                  # accepted (2xx after the dot)
        self.transactions = []              # every completed DATA, any reply
        self.connections = []
        self.max_concurrent = 0
        self.errors = []                    # fixture bugs (should stay empty)
        self._active = set()
        self._ids = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._started = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, args=(port or 0,),
                                        name="smtp-receiver", daemon=True)
        self._thread.start()
        self._started.wait(scaled(10))
        if self._start_error is not None:
            self._thread.join(5)
            raise self._start_error
        if self._server is None:
            raise RuntimeError("receiver on %s did not start" % host)
        self.port = self._server.sockets[0].getsockname()[1]

    def set(self, **behaviour):
        """Change behaviour; applies to the next command of any session."""
        for k, v in behaviour.items():
            if k not in DEFAULTS:
                raise TypeError("unknown receiver behaviour %r" % k)
            if k == "stall_on":
                v = tuple(x.upper() for x in ([v] if isinstance(v, str) else v))
                bad = [x for x in v if x not in STALL_POINTS]
                if bad:
                    raise ValueError("stall_on: unknown points %r" % bad)
            if k == "starttls" and v is not None:
                v = (str(v[0]), str(v[1]))
            self._b[k] = v

    # ---- loop thread -------------------------------------------------------
    def _run(self, port):
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._loop.create_server(
                lambda: _Session(self), self.host, port, reuse_address=True, backlog=128))
        except Exception as e:
            self._start_error = e
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def _opened(self, session):
        with self._cond:
            self._active.add(session)
            self.connections.append(session.conn)
            self.max_concurrent = max(self.max_concurrent, len(self._active))
            self._cond.notify_all()

    def _closed(self, session):
        with self._cond:
            self._active.discard(session)
            session.conn.closed = True
            self._cond.notify_all()

    def _dropped(self, conn):
        with self._cond:
            self._cond.notify_all()

    def _message(self, msg):
        with self._cond:
            self.transactions.append(msg)
            if _code(msg.reply) // 100 == 2:
                self.messages.append(msg)
            self._cond.notify_all()

    def _next_id(self):
        with self._cond:
            self._ids += 1
            return self._ids

    def _error(self, text):
        with self._cond:
            self.errors.append(text)

    # ---- test API -----------------------------------------------------------
    @property
    def active(self):
        """Connections open right now."""
        return len(self._active)

    @property
    def recipients(self):
        """Every accepted recipient over all accepted messages."""
        return [r for m in list(self.messages) for r in m.rcpt_tos]

    def _describe(self):
        out = ["receiver %s:%d: %d message(s), %d transaction(s), %d connection(s)"
               % (self.host, self.port, len(self.messages), len(self.transactions),
                  len(self.connections))]
        for c in list(self.connections)[-3:]:
            out.append("  connection %s tls=%s dropped_in_data=%s" % (
                c.peer, c.tls, c.dropped_in_data))
            for verb, reply in c.replies[-12:]:
                out.append("    %-8s -> %s" % (verb, reply.split("\n")[-1]))
        return "\n".join(out)

    def wait_for(self, n, timeout=10):
        """Wait until at least n messages were accepted; return them all."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d message(s) within %.1fs, got %d\n%s"
                                         % (n, scaled(timeout), len(self.messages),
                                            self._describe()))
                self._cond.wait(min(left, 0.2))
            return list(self.messages)

    def wait_connections(self, n, timeout=10):
        """Wait until at least n connections were made; return them."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while len(self.connections) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d connection(s) within %.1fs, got %d\n%s"
                                         % (n, scaled(timeout), len(self.connections),
                                            self._describe()))
                self._cond.wait(min(left, 0.2))
            return list(self.connections)

    def wait_idle(self, timeout=10):
        """Wait until no connection is open."""
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("connections still open after %.1fs\n%s"
                                         % (scaled(timeout), self._describe()))
                self._cond.wait(min(left, 0.2))

    def clear(self):
        """Forget recorded messages and connections (not open sessions)."""
        with self._cond:
            self.messages.clear()
            self.transactions.clear()
            self.connections[:] = [s.conn for s in self._active]
            self.max_concurrent = len(self._active)

    async def _shutdown(self):
        self._server.close()
        sessions = list(self._active)
        for s in sessions:
            if s.transport is not None:
                s.transport.abort()
            if s.task is not None:
                s.task.cancel()
        tasks = [s.task for s in sessions if s.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def stop(self):
        """Close the listener and every connection; join the thread."""
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            fut.result(scaled(10))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(scaled(10))
        if self._thread.is_alive():
            raise RuntimeError("receiver thread on port %d did not stop" % self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<Receiver %s:%s>" % (self.host, getattr(self, "port", None))
