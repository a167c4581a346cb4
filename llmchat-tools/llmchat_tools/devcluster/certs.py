"""Certificates for the test control plane, made with ``cryptography``.

One CA signs everything: the kube-apiserver serving certificate (127.0.0.1 / localhost)
and the client certificates of the admin user (``O=system:masters``), the controller
manager and the scheduler. The service-account token signer is a separate key pair.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

_VALIDITY = dt.timedelta(days=7)
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterCerts:
    """Every file the control plane components need."""

    ca: CertPair
    apiserver: CertPair
    service_account_key: Path  # private key (PEM, PKCS#8): the token signer
    service_account_pub: Path  # public key (PEM): token verification
    admin: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    front_proxy_ca: CertPair  # request-header authentication (aggregated API servers)
    front_proxy_client: CertPair
    kubelet_client: CertPair  # the apiserver's client certificate towards kubelets


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, *, ca: bool
) -> x509.CertificateBuilder:
    """A certificate valid from a few minutes ago for ``_VALIDITY``: a CA signs certificates and
    CRLs, a leaf signs and enciphers keys."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


class _CA:
    @classmethod
    def load(cls, pair: CertPair) -> _CA:
        ca = cls.__new__(cls)
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        ca.key = key
        ca.cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        return ca

    def __init__(self, common_name: str) -> None:
        self.key = _new_key()
        subject = _name(common_name, "llmchat-dev")
        self.cert = (
            _builder(subject, subject, self.key.public_key(), ca=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        server: bool = False,
        client: bool = False,
        dns_names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _new_key()
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            _builder(
                _name(common_name, organization), self.cert.subject, key.public_key(), ca=False
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def issue_pair(
    ca: CertPair,
    directory: Path,
    stem: str,
    common_name: str,
    *,
    organization: str | None = None,
    server: bool = False,
    client: bool = False,
    dns_names: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> CertPair:
    """Sign one more certificate with an existing CA on disk (the real node's kubelet,
    kube-proxy and the apiserver's kubelet client)."""
    signer = _CA.load(ca)
    cert, key = signer.issue(
        common_name,
        organization=organization,
        server=server,
        client=client,
        dns_names=dns_names,
        ips=ips,
    )
    return _save(directory, stem, cert, key)


def _save(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> CertPair:
    pair = CertPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    _write_cert(cert, pair.cert)
    _write_key(key, pair.key)
    return pair


def generate_cluster_certs(
    directory: Path, *, service_ip: str = "10.96.0.1", extra_ips: tuple[str, ...] = ()
) -> ClusterCerts:
    """Create the CA, serving, client and service-account material in ``directory``
    (``extra_ips``: more addresses of the apiserver, e.g. the real node's)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _CA("llmchat-dev-ca")
    ca_pair = CertPair(cert=directory / "ca.crt", key=directory / "ca.key")
    _write_cert(ca.cert, ca_pair.cert)
    _write_key(ca.key, ca_pair.key)

    serving, serving_key = ca.issue(
        "kube-apiserver",
        server=True,
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=("127.0.0.1", service_ip, *extra_ips),
    )
    admin, admin_key = ca.issue("llmchat-admin", organization="system:masters", client=True)
    kcm, kcm_key = ca.issue("system:kube-controller-manager", client=True)
    sched, sched_key = ca.issue("system:kube-scheduler", client=True)
    kubelet_client, kubelet_client_key = ca.issue(
        "kube-apiserver-kubelet-client", organization="system:masters", client=True
    )

    front_ca = _CA("llmchat-dev-front-proxy-ca")
    front_ca_pair = CertPair(
        cert=directory / "front-proxy-ca.crt", key=directory / "front-proxy-ca.key"
    )
    _write_cert(front_ca.cert, front_ca_pair.cert)
    _write_key(front_ca.key, front_ca_pair.key)
    front_client, front_client_key = front_ca.issue("front-proxy-client", client=True)

    sa_key = _new_key()
    sa_private = directory / "sa.key"
    sa_public = directory / "sa.pub"
    _write_key(sa_key, sa_private)
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    logger.debug("certificates written to %s", directory)
    return ClusterCerts(
        ca=ca_pair,
        apiserver=_save(directory, "apiserver", serving, serving_key),
        service_account_key=sa_private,
        service_account_pub=sa_public,
        admin=_save(directory, "admin", admin, admin_key),
        controller_manager=_save(directory, "kube-controller-manager", kcm, kcm_key),
        scheduler=_save(directory, "kube-scheduler", sched, sched_key),
        front_proxy_ca=front_ca_pair,
        front_proxy_client=_save(directory, "front-proxy-client", front_client, front_client_key),
        kubelet_client=_save(
            directory, "apiserver-kubelet-client", kubelet_client, kubelet_client_key
        ),
    )
