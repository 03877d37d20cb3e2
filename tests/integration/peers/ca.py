"""A throw-away certificate authority made with the openssl CLI.

TestCA(dir) creates a CA and a server certificate for mx.test, localhost,
*.test and 127.0.0.1 (EC P-256 keys: instant to generate). make_cert()
issues more certificates (other names, self-signed) for verification tests.
Key files are mode 0600.
"""

import ipaddress
import os
import subprocess
from collections import namedtuple

CertPair = namedtuple("CertPair", "cert key")

DEFAULT_NAMES = ("mx.test", "localhost", "*.test", "127.0.0.1")


def _openssl(*args, cwd=None):
    p = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s"
                           % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout


def _san(names):
    out = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            out.append("IP:" + n)
        except ValueError:
            out.append("DNS:" + n)
    return ",".join(out)


def _genkey(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    os.chmod(path, 0o600)


class TestCA:
    __test__ = False               # not a pytest test class

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._serial = 1
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca_cert = os.path.join(self.dir, "ca.crt")
        _genkey(self.ca_key)
        _openssl("req", "-x509", "-new", "-key", self.ca_key, "-sha256",
                 "-days", "30", "-subj", "/CN=sluice test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-out", self.ca_cert)
        pair = self.make_cert(DEFAULT_NAMES, basename="server")
        self.cert, self.key = pair.cert, pair.key
        self.pair = pair

    def make_cert(self, names, basename=None, self_signed=False):
        """Issue a server certificate for `names` (host names or IPs; the
        first is also the CN). Returns CertPair(cert, key) paths."""
        if isinstance(names, str):
            names = [names]
        names = list(names)
        if not names:
            raise ValueError("make_cert needs at least one name")
        self._serial += 1
        base = basename or "cert%d" % self._serial
        key = os.path.join(self.dir, base + ".key")
        cert = os.path.join(self.dir, base + ".crt")
        _genkey(key)
        cn = names[0]
        if self_signed:
            _openssl("req", "-x509", "-new", "-key", key, "-sha256", "-days", "30",
                     "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + _san(names),
                     "-addext", "basicConstraints=critical,CA:FALSE",
                     "-addext", "extendedKeyUsage=serverAuth", "-out", cert)
            return CertPair(cert, key)
        csr = os.path.join(self.dir, base + ".csr")
        ext = os.path.join(self.dir, base + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % _san(names))
        _openssl("req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                 "-set_serial", str(self._serial), "-days", "30", "-sha256",
                 "-extfile", ext, "-out", cert)
        os.unlink(csr)
        os.unlink(ext)
        return CertPair(cert, key)
