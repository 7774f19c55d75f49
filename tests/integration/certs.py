"""
Certificates made at test time with C{cryptography}: a local CA and leaf
certificates it signs, written as PEM files into a test's directory.  No
private key is ever committed; every run makes its own.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


def _name(commonName: str) -> x509.Name:
    """A subject or issuer name with only a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])


def _keyPEM(key: "ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey") -> bytes:
    """An unencrypted PKCS#8 PEM private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _caCertificate(subject: x509.Name, issuer: x509.Name, publicKey: Any,
                   signingKey: Any) -> x509.Certificate:
    """
    @return: a CA certificate for C{subject}'s C{publicKey}, valid from a
        day ago for 30 days, signed by C{signingKey} as C{issuer} (the
        same name and key for a root, the parent's for an intermediate).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + 30 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(signingKey, hashes.SHA256())
    )


class CertificateAuthority:
    """
    A throwaway CA that signs leaf certificates for test servers.

    @ivar certificate: the CA's self-signed certificate.
    @ivar certPath: where its PEM certificate was written (for clients'
        trust stores).
    """

    def __init__(self, directory: Path, commonName: str = "rproxy test CA") -> None:
        """
        Make the CA and write its certificate to C{directory/ca.pem}.
        """
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = _caCertificate(
            _name(commonName), _name(commonName), self._key.public_key(), self._key)
        self.certPath = self.directory / "ca.pem"
        self.certPath.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        names: Sequence[str],
        certPath: Optional[Path] = None,
        keyPath: Optional[Path] = None,
        client: bool = False,
        rsaKey: bool = False,
        ocspURL: Optional[str] = None,
        expired: bool = False,
    ) -> Tuple[Path, Path]:
        """
        Sign a server certificate for C{names} (the first is its common
        name; IP literals become IP subject alternative names).

        @param certPath: where to write the certificate followed by the CA
            certificate (a full chain, as C{ssl_certificate} takes); default
            C{DIRECTORY/NAME.crt}.
        @param keyPath: where to write its key; default C{DIRECTORY/NAME.key}.
        @param client: make a client certificate (extended key usage
            C{clientAuth}, as TLS servers verifying clients require).
        @param rsaKey: an RSA key rather than P-256 (for DHE cipher suites,
            which only RSA certificates can use).
        @param ocspURL: an OCSP responder to name in the certificate's
            authority information access extension.
        @param expired: make one whose validity ended yesterday.
        @return: the certificate and key paths.
        """
        key: "ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey"
        if rsaKey:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        alternatives = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = x509.CertificateBuilder()
        if ocspURL is not None:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess([x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(ocspURL),
                )]),
                critical=False,
            )
        certificate = (
            builder
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - (31 if expired else 1) * _ONE_DAY)
            .not_valid_after(now - _ONE_DAY if expired else now + 30 * _ONE_DAY)
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        certPath = Path(certPath or self.directory / f"{names[0]}.crt")
        keyPath = Path(keyPath or self.directory / f"{names[0]}.key")
        certPath.parent.mkdir(parents=True, exist_ok=True)
        keyPath.parent.mkdir(parents=True, exist_ok=True)
        certPath.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
            + self.certificate.public_bytes(serialization.Encoding.PEM)
        )
        keyPath.write_bytes(_keyPEM(key))
        keyPath.chmod(0o600)
        return certPath, keyPath

    def intermediate(self, directory: Path, commonName: str) -> "CertificateAuthority":
        """
        @return: a CA whose certificate this one signs (a chain one longer,
            for C{ssl_verify_depth}); what it issues is written with its
            own certificate after the leaf, so a client sends the chain.
        """
        sub = CertificateAuthority(directory, commonName)
        sub.certificate = _caCertificate(
            _name(commonName), self.certificate.subject, sub._key.public_key(), self._key)
        sub.certPath.write_bytes(sub.certificate.public_bytes(serialization.Encoding.PEM))
        return sub

    def writeKey(self, path: Path) -> Path:
        """
        Write the CA's key to C{path} (for a local C{openssl ocsp}
        responder signing as the CA) and return it.
        """
        path.write_bytes(_keyPEM(self._key))
        path.chmod(0o600)
        return path

    def ocspResponse(self, certPath: Path, revoked: bool = False) -> bytes:
        """
        @return: a DER OCSP response signed by this CA saying the (first)
            certificate in C{certPath} is good (or revoked), valid for a day.
        """
        from cryptography.x509 import ocsp

        certificate = x509.load_pem_x509_certificate(Path(certPath).read_bytes())
        now = datetime.datetime.now(datetime.timezone.utc)
        status = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=certificate, issuer=self.certificate, algorithm=hashes.SHA1(),
                cert_status=status, this_update=now - datetime.timedelta(minutes=5),
                next_update=now + _ONE_DAY,
                revocation_time=now - _ONE_DAY if revoked else None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.certificate)
        )
        response = builder.sign(self._key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def commonNameOf(pem: bytes) -> str:
    """
    @return: the common name of the first certificate in C{pem} (or of a
        DER certificate), for checking which one a server sent.
    """
    if pem.startswith(b"-----"):
        certificate = x509.load_pem_x509_certificate(pem)
    else:
        certificate = x509.load_der_x509_certificate(pem)
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value)
