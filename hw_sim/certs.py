"""A throwaway PKI for tests, made with the openssl command: a CA, a server and clients, and an unrelated CA.

Keys are EC P-256 (a whole PKI takes a few tens of milliseconds) and the
certificates are valid for two days.  Nothing here is fit for a real broker:
the CA key lies unprotected beside the certificates.

Example::

    from pathlib import Path
    from hw_sim.certs import make_pki

    pki = make_pki(Path("/tmp/pki"), server_ips=["10.77.3.2"])
    pki.ca                                    # trust this to reach the server
    pki.server.cert, pki.server.key           # for mosquitto's certfile / keyfile
    post = pki.client("school-1/post-1")      # CN school-1/post-1, signed by the CA
    stranger = pki.stranger                   # a CA the server does not trust
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hw_sim.paths import tool

VALID_DAYS = 2

# openssl req needs a config; this one asks nothing and holds the extensions of each kind of certificate.
OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
prompt = no
[subject]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

LEAF_EXTENSIONS = """\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{alt_names}"""


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key (PEM files), e.g. ``make_pki(folder).server``."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its certificate (the file clients and servers trust) and its key.

    Example::

        ca = new_authority(Path("/tmp/pki/ca"), "my test CA")
        web = ca.issue("web.test", "serverAuth", dns=["web.test"], ips=["10.77.3.2"])
    """

    cert: Path
    key: Path
    folder: Path

    def issue(self, name: str, usage: str, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> CertKey:
        """A certificate for ``name`` (its CN) with ``usage`` (``serverAuth`` or ``clientAuth``) and the SANs given."""
        stem = self.folder / f"{usage}-{file_safe(name)}"
        key = new_key(stem.with_suffix(".key"))
        csr = stem.with_suffix(".csr")
        openssl("req", "-new", "-key", key, "-subj", subject(name), "-config", self.config(), "-out", csr)
        extensions = stem.with_suffix(".ext")
        extensions.write_text(leaf_extensions(usage, dns, ips))
        cert = stem.with_suffix(".crt")
        openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.cert,
            "-CAkey",
            self.key,
            "-set_serial",
            str(serial()),
            "-days",
            str(VALID_DAYS),
            "-sha256",
            "-extfile",
            extensions,
            "-extensions",
            "leaf",
            "-out",
            cert,
        )
        return CertKey(cert, key)

    def config(self) -> Path:
        path = self.folder / "openssl.cnf"
        if not path.exists():
            path.write_text(OPENSSL_CONFIG)
        return path


@dataclass(frozen=True)
class Pki:
    """The files of a test PKI; :func:`make_pki` makes one.

    Example::

        pki = make_pki(Path("/tmp/pki"))
        client.tls_set(str(pki.ca), str(pki.client("centre").cert), str(pki.client("centre").key))
    """

    authority: Authority
    server: CertKey  # CN localhost; SANs DNS:localhost, IP:127.0.0.1 and the extra names and addresses asked for
    stranger: Path  # the certificate of an unrelated CA: trusting it must not reach the server

    @property
    def ca(self) -> Path:
        """The CA certificate to trust (mosquitto's ``cafile``, a client's ``ca_certs``)."""
        return self.authority.cert

    def client(self, name: str) -> CertKey:
        """A client certificate with CN ``name``, signed by the CA (issued on the first call for that name)."""
        stem = self.authority.folder / f"clientAuth-{file_safe(name)}"
        found = CertKey(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        return found if found.cert.exists() else self.authority.issue(name, "clientAuth")


def make_pki(folder: Path, server_ips: Sequence[str] = (), server_names: Sequence[str] = ()) -> Pki:
    """A CA with a server certificate for localhost (and ``server_ips`` / ``server_names``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    authority = new_authority(folder / "ca", "alarmpost test CA")
    server = authority.issue("localhost", "serverAuth", ["localhost", *server_names], ["127.0.0.1", *server_ips])
    stranger = new_authority(folder / "stranger", "unrelated test CA")
    return Pki(authority, server, stranger.cert)


def new_authority(folder: Path, name: str) -> Authority:
    folder.mkdir(parents=True, exist_ok=True)
    authority = Authority(folder / "ca.crt", new_key(folder / "ca.key"), folder)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        authority.key,
        "-subj",
        subject(name),
        "-config",
        authority.config(),
        "-extensions",
        "ca",
        "-days",
        str(VALID_DAYS),
        "-sha256",
        "-out",
        authority.cert,
    )
    return authority


def new_key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    path.chmod(0o600)
    return path


def leaf_extensions(usage: str, dns: Sequence[str], ips: Sequence[str]) -> str:
    names = [f"DNS.{index} = {name}" for index, name in enumerate(dns, 1)]
    names += [f"IP.{index} = {address}" for index, address in enumerate(ips, 1)]
    alt_names = "subjectAltName = @alt_names\n[alt_names]\n" + "\n".join(names) + "\n" if names else ""
    return LEAF_EXTENSIONS.format(usage=usage, alt_names=alt_names)


def subject(common_name: str) -> str:
    """``-subj`` for a CN; '/' and '+' in it are escaped (a post's identity is ``site/post``)."""
    return "/CN=" + re.sub(r"([\\/+])", r"\\\1", common_name)


def file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def serial() -> int:
    return secrets.randbits(63) | 1


def openssl(*args: str | Path) -> None:
    """Run the openssl command; a failure raises with openssl's own words."""
    done = subprocess.run([tool("openssl"), *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")
