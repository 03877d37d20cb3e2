"""Run a real sluiced for a test.

Sluiced(binary, ctl_binary, conf_template, tmp, dns_port=0, **extra)
writes the config (placeholders substituted, see render()) into its own
tmp dir and starts `sluiced -f -c FILE`. Every process is tracked by PID
and stopped by PID. stdout/stderr go to files in the tmp dir so failures
can show them; sanitizer reports found there fail the test at teardown.
"""

import http.client
import json as jsonlib
import os
import re
import signal
import smtplib
import socket
import subprocess
import time

from .util import can_connect, free_port, scaled

# Directives the fixture supplies when the template lacks them.
_DEFAULT_LINES = (
    ("spool", "spool {spool}"),
    ("pidfile", "pidfile {pidfile}"),
    ("log", "log {log}"),
    ("accounting", "accounting {acct}"),
    ("control-socket", "control-socket {control}"),
    ("store", "store {store}"),
)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                        r"WARNING: ThreadSanitizer")
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._-]+)")


def render(template, values):
    """Substitute {name} placeholders from values. Other braces (config
    blocks) stay as written; "{{"/"}}" become "{"/"}" so str.format-style
    templates work too. An unknown {name} is a KeyError (a typo)."""
    def sub(m):
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        name = m.group(1)
        if name not in values:
            raise KeyError("config template placeholder {%s} is not known "
                           "(known: %s)" % (name, ", ".join(sorted(values))))
        return str(values[name])
    return _PLACEHOLDER.sub(sub, template)


def _has_directive(text, name):
    return re.search(r"^[ \t]*%s(?:[ \t]|$)" % re.escape(name), text, re.M) is not None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class SluicedError(AssertionError):
    pass


class Sluiced:
    def __init__(self, binary, ctl_binary, conf, tmp, dns_port=0, resolver=False, **extra):
        self.binary = binary
        self.ctl_binary = ctl_binary
        self.tmp = str(tmp)
        os.makedirs(self.tmp, exist_ok=True)
        self.spool = os.path.join(self.tmp, "spool")
        self.store = os.path.join(self.tmp, "store")
        self.control = os.path.join(self.tmp, "control.sock")
        self.pidfile = os.path.join(self.tmp, "sluiced.pid")
        self.log_path = os.path.join(self.tmp, "sluiced.log")
        self.acct_path = os.path.join(self.tmp, "events.jsonl")
        self.conf_path = os.path.join(self.tmp, "sluice.conf")
        self.stdout_path = os.path.join(self.tmp, "stdout.log")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.port = free_port()
        self.dns_port = dns_port
        self._resolver = resolver
        self._extra = extra
        self.proc = None
        self.exit_codes = []                # (pid, code) of every finished run
        self.template = None
        self.conf_text = None
        self.write_conf(conf)

    # ---- config --------------------------------------------------------------
    def values(self):
        v = dict(tmp=self.tmp, spool=self.spool, port=self.port, control=self.control,
                 pidfile=self.pidfile, log=self.log_path, acct=self.acct_path,
                 store=self.store, dns_port=self.dns_port)
        v.update(self._extra)
        return v

    def write_conf(self, template):
        head = [line for name, line in _DEFAULT_LINES if not _has_directive(template, name)]
        if self._resolver and self.dns_port and not _has_directive(template, "resolver"):
            head.append("resolver 127.0.0.1:{dns_port}")
        full = ("# written by the sluiced test fixture\n" + "\n".join(head) + "\n" + template
                if head else template)
        text = render(full, self.values())
        self.template = template
        self.conf_text = text
        # A template may name its own paths: follow what the daemon will use.
        for name, attr in (("spool", "spool"), ("pidfile", "pidfile"), ("log", "log_path"),
                           ("accounting", "acct_path"), ("control-socket", "control"),
                           ("store", "store")):
            m = re.search(r"^[ \t]*%s[ \t]+(\S+)" % re.escape(name), text, re.M)
            if m:
                setattr(self, attr, m.group(1))
        with open(self.conf_path, "w") as f:
            f.write(text)
        return text

    @property
    def has_control(self):
        return _has_directive(self.conf_text, "control-socket")

    # ---- process ---------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True):
        """Start (again) with the current config and spool."""
        if self.alive():
            raise SluicedError("sluiced already running (pid %d)" % self.pid)
        if not os.access(self.binary, os.X_OK):
            raise SluicedError("sluiced binary not found or not executable: %s" % self.binary)
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "-f", "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.tmp)
        finally:
            out.close()
            err.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + scaled(timeout)
        want_port = "{port}" in self.template or str(self.port) in self.conf_text
        while True:
            if not self.alive():
                code = self._reap()
                raise SluicedError("sluiced exited with code %s during startup\n%s"
                                   % (code, self.diagnostics()))
            ok = True
            if want_port:
                ok = can_connect("127.0.0.1", self.port, timeout=0.5)
            if ok and self.has_control:
                ok = self._control_accepts()
            if ok and not want_port and not self.has_control:
                ok = os.path.exists(self.pidfile)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise SluicedError("sluiced (pid %d) not ready after %.0fs (listener "
                                   "127.0.0.1:%d%s)\n%s" % (
                                       self.pid, scaled(timeout), self.port,
                                       ", control socket" if self.has_control else "",
                                       self.diagnostics()))
            time.sleep(0.02)

    def _control_accepts(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(self.control)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def _reap(self):
        code = self.proc.wait()
        if not self.exit_codes or self.exit_codes[-1][0] != self.proc.pid:
            self.exit_codes.append((self.proc.pid, code))
        return code

    def signal(self, sig):
        if not self.alive():
            raise SluicedError("sluiced is not running\n" + self.diagnostics())
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=10, check=True):
        """SIGTERM, wait, and (check) assert a clean exit (code 0)."""
        if self.proc is None:
            return None
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self._reap()
                raise SluicedError("sluiced (pid %d) did not exit within %.0fs of SIGTERM\n%s"
                                   % (self.proc.pid, scaled(timeout), self.diagnostics()))
        code = self._reap()
        if check and code != 0:
            raise SluicedError("sluiced (pid %d) exited with code %d\n%s"
                               % (self.proc.pid, code, self.diagnostics()))
        return code

    def kill9(self):
        """SIGKILL (a crash): no cleanup happens in sluiced."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            code = self.proc.wait()
            if not self.exit_codes or self.exit_codes[-1][0] != self.proc.pid:
                self.exit_codes.append((self.proc.pid, "killed"))
            return code
        return None

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    def reload(self, new_conf=None, timeout=3):
        """Rewrite the config (if given) and send SIGHUP. Waits (soft, up
        to timeout) for a new log line mentioning reload."""
        if new_conf is not None:
            self.write_conf(new_conf)
        before = self._reload_lines()
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline and self.alive():
            if self._reload_lines() > before:
                return
            time.sleep(0.02)

    def _reload_lines(self):
        return len(re.findall(r"reload", self.log_text(), re.I))

    # ---- what it wrote --------------------------------------------------------
    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self):
        return self._read(self.log_path)

    def stderr_text(self):
        return self._read(self.stderr_path)

    def sanitizer_report(self):
        """The sanitizer report in stderr, or None."""
        text = self.stderr_text()
        m = _SANITIZER.search(text)
        return text[max(0, m.start() - 200):] if m else None

    def diagnostics(self, lines=40):
        def tail(text):
            t = text.splitlines()[-lines:]
            return "\n".join("    " + x for x in t) if t else "    (empty)"
        return ("  config %s:\n%s\n  log tail:\n%s\n  stderr tail:\n%s"
                % (self.conf_path, tail(self.conf_text), tail(self.log_text()),
                   tail(self.stderr_text())))

    def events(self, type=None):
        """Accounting events (parsed JSON lines), optionally of one type."""
        out = []
        for line in self._read(self.acct_path).split("\n"):
            line = line.strip()
            if not line:
                continue
            try:
                ev = jsonlib.loads(line)
            except ValueError:
                continue                    # a line being written right now
            if type is None or ev.get("type") == type:
                out.append(ev)
        return out

    @staticmethod
    def _matches(ev, match):
        for k, want in match.items():
            have = ev.get(k)
            if callable(want):
                if not want(have):
                    return False
            elif have != want:
                return False
        return True

    def wait_event(self, type, n=1, timeout=10, **match):
        """Wait for n accounting events of a type whose fields equal
        **match (a callable value is a predicate). Returns them all."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            evs = [e for e in self.events(type) if self._matches(e, match)]
            if len(evs) >= n:
                return evs
            if not self.alive():
                raise SluicedError("sluiced is not running while waiting for %d %r event(s)"
                                   " %r (got %d)\n%s" % (n, type, match, len(evs),
                                                         self.diagnostics()))
            if time.monotonic() >= deadline:
                seen = self.events()
                summary = "\n".join("    " + jsonlib.dumps(e)[:300] for e in seen[-15:])
                raise AssertionError(
                    "expected %d %r event(s) matching %r within %.0fs, got %d\n"
                    "  last events (%d total):\n%s\n%s"
                    % (n, type, match, scaled(timeout), len(evs), len(seen),
                       summary or "    (none)", self.diagnostics(20)))
            time.sleep(0.05)

    # ---- clients ------------------------------------------------------------------
    def ctl(self, *args, json=False, check=True, timeout=30, input=None):
        """Run sluicectl -s <control socket> [--json] ARGS; stdout (str or
        parsed JSON). check: non-zero exit raises with stderr."""
        cmd = [self.ctl_binary, "-s", self.control] + (["--json"] if json else []) + \
            [str(a) for a in args]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL if input is None else None,
                           input=input, capture_output=True, timeout=scaled(timeout),
                           text=True)
        self.last_ctl = p
        if check and p.returncode != 0:
            raise SluicedError("%s exited %d\n  stdout: %s\n  stderr: %s"
                               % (" ".join(cmd), p.returncode, p.stdout.strip(),
                                  p.stderr.strip()))
        if json:
            try:
                return jsonlib.loads(p.stdout)
            except ValueError:
                if check:
                    raise SluicedError("%s: output is not JSON: %r"
                                       % (" ".join(cmd), p.stdout[:500]))
                return p.stdout
        return p.stdout

    def api(self, method, path, body=None, headers=None, timeout=30):
        """One HTTP request on the control socket: (status, parsed JSON, or
        the text when the body is not JSON, or None when empty)."""
        conn = _UnixHTTPConnection(self.control, scaled(timeout))
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, str)):
                body = jsonlib.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        finally:
            conn.close()
        if not raw:
            return status, None
        try:
            return status, jsonlib.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", errors="replace")

    def smtp(self, timeout=30):
        """A connected smtplib.SMTP to the listener (greeting read)."""
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                            timeout=scaled(timeout))

    def send(self, from_, to, msg, timeout=30):
        """Inject one message over SMTP. Returns the queue id from the 250
        reply ("queued as ID"), or the reply text when it has none. SMTP
        errors raise smtplib exceptions."""
        if isinstance(to, str):
            to = [to]
        if isinstance(msg, str):
            msg = msg.encode("utf-8")
        s = self.smtp(timeout)
        try:
            s.ehlo_or_helo_if_needed()
            code, resp = s.mail(from_)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, resp, from_)
            for r in to:
                code, resp = s.rcpt(r)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({r: (code, resp)})
            code, resp = s.data(msg)
            if code != 250:
                raise smtplib.SMTPDataError(code, resp)
            s.quit()
        finally:
            s.close()
        text = resp.decode("utf-8", errors="replace")
        m = _QUEUED_AS.search(text)
        return m.group(1) if m else text

    # ---- teardown -----------------------------------------------------------------
    def teardown(self):
        """Stop by PID (SIGTERM, then SIGKILL). Returns a list of problems:
        a non-zero exit after SIGTERM, a sanitizer report."""
        problems = []
        if self.proc is not None and self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                problems.append("pid %d ignored SIGTERM for %.0fs (killed)"
                                % (self.proc.pid, scaled(10)))
            else:
                code = self._reap()
                if code != 0:
                    problems.append("pid %d exited with code %d after SIGTERM"
                                    % (self.proc.pid, code))
        rep = self.sanitizer_report()
        if rep:
            problems.append("sanitizer report in %s:\n%s" % (self.stderr_path, rep[:4000]))
        return problems

    def __repr__(self):
        return "<Sluiced pid=%s port=%d tmp=%s>" % (self.pid, self.port, self.tmp)
