"""Self-signed certificates made in the test that needs them (the `cryptography`
package): for `deskpulse serve --certfile/--keyfile` and tests/pushserver.py, and for the
kiosk's sync.server_cert."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Cert:
    certfile: Path
    keyfile: Path

    @property
    def pem(self) -> str:
        return self.certfile.read_text()


def make_cert(folder: Path, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
              valid_days: tuple[int, int] = (-1, 30), passphrase: bytes | None = None) -> Cert:
    """A self-signed ECDSA P-256 certificate for hosts (IP addresses and names, in its
    subjectAltName) valid from valid_days[0] to valid_days[1] days from now, and its key
    (locked with passphrase, if given), written to folder/name.crt and folder/name.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"deskpulse test {name}")])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
            .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = Cert(folder / f"{name}.crt", folder / f"{name}.key")
    paths.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    locked = (serialization.BestAvailableEncryption(passphrase) if passphrase
              else serialization.NoEncryption())
    paths.keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8, locked))
    return paths
