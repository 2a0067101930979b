"""The certificates and keys a throwaway control plane needs, generated at start.

One self-signed CA signs everything: the API server's serving certificate and every client
certificate (the API server trusts client certificates signed by it, with CN as the user name and
O as the groups, so "O=system:masters" is an administrator). The service-account key pair is
separate: the API server signs tokens with the private key and checks them with the public one.

EC P-256 keys throughout: every Kubernetes component accepts them (ES256 for service-account
tokens) and they are generated in microseconds, where RSA costs tens of milliseconds a key.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test run, short enough that a leaked file is useless soon.
VALIDITY = datetime.timedelta(days=2)
# Clocks differ a little between processes started at the same moment; back-date by this.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """PEM files on disk: a certificate (or public key) and its private key."""

    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A CA whose certificate and key live in `directory`; issues serving and client certificates."""

    def __init__(self, directory: Path, *, common_name: str = "modelferry-test-ca") -> None:
        self.directory = directory
        self._key = _new_key()
        name = _name(common_name)
        self._cert = (
            _builder(subject=name, issuer=name, public_key=self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.files = KeyPair(cert=directory / "ca.crt", key=directory / "ca.key")
        self.files.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self._key, self.files.key)

    def issue_serving(self, name: str, *, hosts: Sequence[str]) -> KeyPair:
        """A server certificate valid for `hosts` (DNS names and IP addresses)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(
            name,
            subject=_name(name),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=x509.SubjectAlternativeName(sans),
        )

    def issue_client(self, user: str, *, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate the API server reads as user `user` in `groups`."""
        file_stem = "client-" + user.replace(":", "_")
        return self._issue(file_stem, subject=_name(user, groups), usage=ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(
        self,
        file_stem: str,
        *,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: x509.SubjectAlternativeName | None = None,
    ) -> KeyPair:
        key = _new_key()
        builder = (
            _builder(subject=subject, issuer=self._cert.subject, public_key=key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        files = KeyPair(cert=self.directory / f"{file_stem}.crt", key=self.directory / f"{file_stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, files.key)
        return files


def _builder(
    *, subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
    )


@dataclass(frozen=True)
class SigningKeys:
    """PEM files on disk: a private key and its public key (not a certificate)."""

    public: Path
    private: Path


def write_service_account_keys(directory: Path) -> SigningKeys:
    """The service-account token pair: the API server signs with `private` (and the controller
    manager's legacy token controller too), and verifies with `public`."""
    key = _new_key()
    files = SigningKeys(public=directory / "sa.pub", private=directory / "sa.key")
    files.public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    _write_key(key, files.private)
    return files
