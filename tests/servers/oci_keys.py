"""A throwaway OCI user-principal identity for tests: an RSA key, its fingerprint, a secret.

The fingerprint is computed the way OCI does (MD5 of the DER public key, colon-separated), so the
`oci` SDK signs requests exactly as it would for a real user, and the fake server can check them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TENANCY = "ocid1.tenancy.oc1..aaaaaaaatesttenancy"
USER = "ocid1.user.oc1..aaaaaaaatestuser"


@dataclass(frozen=True)
class OciTestIdentity:
    private_key: rsa.RSAPrivateKey
    pem: str
    fingerprint: str

    @property
    def key_id(self) -> str:
        return f"{TENANCY}/{USER}/{self.fingerprint}"

    def secret(self, **overrides: str) -> dict[str, str]:
        """The storage secret's data for auth_type UserPrincipal."""
        values = {
            "tenancy": TENANCY,
            "user": USER,
            "fingerprint": self.fingerprint,
            "region": "us-ashburn-1",
            "privateKey": self.pem,
        }
        return {**values, **overrides}


def make_identity(*, passphrase: str | None = None) -> OciTestIdentity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fingerprint = ":".join(f"{b:02x}" for b in hashlib.md5(der).digest())
    return OciTestIdentity(private_key=key, pem=pem, fingerprint=fingerprint)
