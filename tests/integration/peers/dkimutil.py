"""DKIM helpers: make a signing key (openssl CLI) with its DNS TXT record,
and verify a received message with dkimpy against the test DNS server."""

import base64
import os
import subprocess

import dkim
from dkim.util import parse_tag_value


def make_dkim_key(directory, selector="s1", alg="rsa", bits=2048):
    """Write <selector>.key (PEM, mode 0600) into directory. Returns
    (keyfile, txt) where txt is the DNS record "v=DKIM1; k=...; p=..."."""
    os.makedirs(directory, exist_ok=True)
    key = os.path.join(str(directory), "%s.%s.key" % (selector, alg))
    if alg == "rsa":
        gen = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
               "rsa_keygen_bits:%d" % bits, "-out", key]
    elif alg == "ed25519":
        gen = ["openssl", "genpkey", "-algorithm", "ED25519", "-out", key]
    else:
        raise ValueError("alg must be rsa or ed25519")
    subprocess.run(gen, check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    if alg == "rsa":
        txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    else:
        txt = "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
    return key, txt


def dkim_verify(data, dns_server):
    """Verify every DKIM-Signature of a message (bytes as received) with
    keys from dns_server. Returns a list of (domain, selector, ok) for each
    signature, in header order; [] when unsigned."""
    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return dns_server.txt(name)

    d = dkim.DKIM(data)
    sigs = [v for h, v in d.headers if h.lower() == b"dkim-signature"]
    out = []
    for idx, value in enumerate(sigs):
        try:
            tags = parse_tag_value(value)
        except dkim.DKIMException:
            tags = {}
        try:
            ok = bool(dkim.DKIM(data).verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            ok = False
        out.append(((tags.get(b"d") or b"").decode(), (tags.get(b"s") or b"").decode(), ok))
    return out
