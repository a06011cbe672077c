"""X.509 identities of consortium members: each organisation's CA and the certificates it issues.

A member certificate names its organisation (O), role (OU) and member (CN) over an Ed25519 key;
this module issues, parses, verifies and caches them, and keeps keys and certificates on disk.
"""

from __future__ import annotations

import datetime
import enum
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from medledger.core.errors import CertificateError
from medledger.core.hashing import Hash32, sha256
from medledger.core.signing import SigningKey

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
"""What an organisation id or a member name may look like; it also keeps keystore file names safe."""

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MS_PER_SECOND = 1000
_MS_PER_DAY = 86_400 * _MS_PER_SECOND

_ED25519_ALGORITHM_IDENTIFIER = bytes.fromhex("300506032b6570")
"""DER of the AlgorithmIdentifier for Ed25519 (RFC 8410: the OID and no parameters)."""

_MALFORMED_CERTIFICATE_ERRORS = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


class Role(enum.StrEnum):
    """What a member may do on the ledger; carried in the certificate's OU."""

    ADMIN = "admin"
    PEER = "peer"
    CLINICIAN = "clinician"
    NURSE = "nurse"
    REGISTRAR = "registrar"
    RESEARCHER = "researcher"
    CLAIMS_OFFICER = "claims_officer"
    AUDITOR = "auditor"
    PHARMACIST = "pharmacist"
    LOGISTICS = "logistics"
    VAULT = "vault"
    """The organisation's vault service: it records each delivery of a record on the ledger."""


class OrgKind(enum.StrEnum):
    """What kind of organisation a consortium member is; carried in its CA certificate's OU."""

    HOSPITAL = "hospital"
    RESEARCH = "research"
    INSURER = "insurer"
    REGULATOR = "regulator"
    MANUFACTURER = "manufacturer"
    DISTRIBUTOR = "distributor"
    PHARMACY = "pharmacy"


def check_name(label: str, name: str) -> str:
    """Return `name` if it is a valid org id or member name, else raise CertificateError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise CertificateError(
            f"{label} {name!r} is not valid: use 2-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return name


def _ms_to_datetime(ms: int) -> datetime.datetime:
    # X.509 validity has whole-second precision, so the sub-second part is dropped (rounded down).
    return _EPOCH + datetime.timedelta(seconds=ms // _MS_PER_SECOND)


def _datetime_to_ms(moment: datetime.datetime) -> int:
    return (moment - _EPOCH) // datetime.timedelta(seconds=1) * _MS_PER_SECOND


def _check_validity_arguments(now_ms: int, valid_days: int) -> None:
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
        raise CertificateError(f"now_ms must be a non-negative integer of milliseconds, got {now_ms!r}")
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days <= 0:
        raise CertificateError(f"valid_days must be a positive integer, got {valid_days!r}")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(length_bytes)]) + length_bytes


def _check_envelope(der: bytes, certificate: x509.Certificate) -> None:
    # The signature covers only the TBS part. Rebuilding everything around it the one way DER
    # allows means no second byte string (hence no second cert_id) exists for one signed certificate.
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise CertificateError(
            f"certificate is signed with {certificate.signature_algorithm_oid.dotted_string}, not Ed25519"
        )
    signature_bit_string = b"\x03" + _der_length(len(certificate.signature) + 1) + b"\x00" + certificate.signature
    body = certificate.tbs_certificate_bytes + _ED25519_ALGORITHM_IDENTIFIER + signature_bit_string
    if der != b"\x30" + _der_length(len(body)) + body:
        raise CertificateError("certificate is not in the one DER form of an Ed25519-signed certificate")


def _load_der(der: bytes) -> x509.Certificate:
    if not isinstance(der, (bytes, bytearray, memoryview)):
        raise CertificateError(f"a certificate is DER bytes, got {type(der).__name__}")
    data = bytes(der)
    try:
        certificate = x509.load_der_x509_certificate(data)
        # cryptography decodes these fields on first access only; touching them here makes a
        # malformed certificate fail now, as a CertificateError, instead of later as anything.
        _ = (certificate.version, certificate.issuer, certificate.subject, certificate.extensions)
    except _MALFORMED_CERTIFICATE_ERRORS as exc:
        raise CertificateError(f"not a well-formed DER X.509 certificate: {exc}") from exc
    _check_envelope(data, certificate)
    if certificate.serial_number <= 0:
        raise CertificateError("certificate serial number is not positive (RFC 5280 section 4.1.2.2)")
    return certificate


def _single_attribute(certificate: x509.Certificate, oid: x509.ObjectIdentifier, label: str) -> str:
    values = certificate.subject.get_attributes_for_oid(oid)
    if len(values) != 1:
        found = "no" if not values else f"{len(values)}"
        raise CertificateError(f"certificate subject has {found} {label} attribute(s); exactly one is required")
    value = values[0].value
    if not isinstance(value, str):
        raise CertificateError(f"certificate subject {label} is not a text string")
    return value


def _ed25519_public_key(certificate: x509.Certificate) -> Ed25519PublicKey:
    try:
        public_key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"certificate public key cannot be read: {exc}") from exc
    if not isinstance(public_key, Ed25519PublicKey):
        raise CertificateError(f"certificate key is {type(public_key).__name__}, not Ed25519")
    return public_key


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound as exc:
        raise CertificateError("certificate has no BasicConstraints extension") from exc
    if not extension.critical:
        raise CertificateError("certificate BasicConstraints extension is not marked critical")
    return extension.value


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage:
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError("certificate has no KeyUsage extension") from exc


def _validity_ms(certificate: x509.Certificate) -> tuple[int, int]:
    not_before_ms = _datetime_to_ms(certificate.not_valid_before_utc)
    not_after_ms = _datetime_to_ms(certificate.not_valid_after_utc)
    if not_after_ms < not_before_ms:
        raise CertificateError("certificate expires before it becomes valid")
    return not_before_ms, not_after_ms


def _check_signature(certificate: x509.Certificate, issuer_key: Ed25519PublicKey, what: str) -> None:
    try:
        issuer_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
    except InvalidSignature as exc:
        raise CertificateError(f"{what} does not verify") from exc


@dataclass(frozen=True, slots=True)
class MemberCertificate:
    """A parsed member certificate: who the member is, in which organisation, in which role."""

    der: bytes
    """The certificate exactly as issued (DER)."""

    cert_id: str
    """Hex SHA-256 of `der`; how the ledger refers to this certificate."""

    org_id: str
    """The issuing organisation (subject O)."""

    role: Role
    """The member's role (subject OU)."""

    name: str
    """The member's name within its organisation (subject CN)."""

    public_key: bytes
    """The member's 32-byte raw Ed25519 public key."""

    not_before_ms: int
    """First millisecond of validity, since the epoch (a whole second)."""

    not_after_ms: int
    """Last millisecond of validity, since the epoch (a whole second, inclusive as in RFC 5280)."""

    serial: int
    """The serial number the CA gave the certificate."""

    def valid_at(self, ms: int) -> bool:
        """True when the instant `ms` (milliseconds since the epoch) lies in the validity period."""
        return self.not_before_ms <= ms <= self.not_after_ms


@dataclass(frozen=True, slots=True)
class CACertificate:
    """A parsed, self-signed organisation CA certificate."""

    der: bytes
    """The certificate exactly as issued (DER)."""

    cert_id: str
    """Hex SHA-256 of `der`."""

    org_id: str
    """The organisation the CA belongs to (subject O)."""

    kind: OrgKind
    """What kind of organisation it is (subject OU)."""

    public_key: bytes
    """The CA's 32-byte raw Ed25519 public key."""

    not_before_ms: int
    """First millisecond of validity, since the epoch (a whole second)."""

    not_after_ms: int
    """Last millisecond of validity, since the epoch (a whole second, inclusive as in RFC 5280)."""

    def valid_at(self, ms: int) -> bool:
        """True when the instant `ms` (milliseconds since the epoch) lies in the validity period."""
        return self.not_before_ms <= ms <= self.not_after_ms


def _parse_member(der: bytes) -> tuple[x509.Certificate, MemberCertificate]:
    certificate = _load_der(der)
    public_key = _ed25519_public_key(certificate)
    if _basic_constraints(certificate).ca:
        raise CertificateError("this is a CA certificate, not a member certificate")
    if not _key_usage(certificate).digital_signature:
        raise CertificateError("member certificate KeyUsage does not allow digital signatures")
    org_id = check_name("organisation id", _single_attribute(certificate, NameOID.ORGANIZATION_NAME, "O"))
    role_text = _single_attribute(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    name = check_name("member name", _single_attribute(certificate, NameOID.COMMON_NAME, "CN"))
    try:
        role = Role(role_text)
    except ValueError as exc:
        raise CertificateError(f"unknown role {role_text!r}; known roles: {', '.join(Role)}") from exc
    not_before_ms, not_after_ms = _validity_ms(certificate)
    parsed = MemberCertificate(
        der=bytes(der),
        cert_id=sha256(bytes(der)).hex(),
        org_id=org_id,
        role=role,
        name=name,
        public_key=public_key.public_bytes_raw(),
        not_before_ms=not_before_ms,
        not_after_ms=not_after_ms,
        serial=certificate.serial_number,
    )
    return certificate, parsed


def _parse_ca(der: bytes) -> tuple[x509.Certificate, CACertificate]:
    certificate = _load_der(der)
    public_key = _ed25519_public_key(certificate)
    if not _basic_constraints(certificate).ca:
        raise CertificateError("this is not a CA certificate (BasicConstraints ca=False)")
    if not _key_usage(certificate).key_cert_sign:
        raise CertificateError("CA certificate KeyUsage does not allow signing certificates")
    if certificate.issuer != certificate.subject:
        raise CertificateError("CA certificate is not self-signed (issuer differs from subject)")
    _check_signature(certificate, public_key, "CA certificate self-signature")
    org_id = check_name("organisation id", _single_attribute(certificate, NameOID.ORGANIZATION_NAME, "O"))
    kind_text = _single_attribute(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    try:
        kind = OrgKind(kind_text)
    except ValueError as exc:
        raise CertificateError(f"unknown organisation kind {kind_text!r}; known kinds: {', '.join(OrgKind)}") from exc
    not_before_ms, not_after_ms = _validity_ms(certificate)
    parsed = CACertificate(
        der=bytes(der),
        cert_id=sha256(bytes(der)).hex(),
        org_id=org_id,
        kind=kind,
        public_key=public_key.public_bytes_raw(),
        not_before_ms=not_before_ms,
        not_after_ms=not_after_ms,
    )
    return certificate, parsed


def parse_member_certificate(der: bytes) -> MemberCertificate:
    """Parse a member certificate without checking who issued it; raise CertificateError if malformed."""
    return _parse_member(der)[1]


def parse_ca_certificate(der: bytes) -> CACertificate:
    """Parse an organisation CA certificate and check its self-signature; raise CertificateError otherwise."""
    return _parse_ca(der)[1]


def verify_member_certificate(member_der: bytes, ca_der: bytes) -> MemberCertificate:
    """Parse `member_der` and check that the CA in `ca_der` issued it; validity times are not checked here."""
    member_x509, member = _parse_member(member_der)
    ca_x509, ca = _parse_ca(ca_der)
    if member_x509.issuer != ca_x509.subject:
        raise CertificateError(
            f"certificate issuer {member_x509.issuer.rfc4514_string()!r} "
            f"is not the CA {ca_x509.subject.rfc4514_string()!r}"
        )
    if member.org_id != ca.org_id:
        raise CertificateError(f"member belongs to organisation {member.org_id!r} but the CA is {ca.org_id!r}")
    _check_signature(
        member_x509,
        Ed25519PublicKey.from_public_bytes(ca.public_key),
        f"member certificate signature under the key of CA {ca.cert_id[:16]}…",
    )
    return member


class CertificateVerifier:
    """verify_member_certificate behind a bounded, thread-safe LRU cache of outcomes.

    Failures are cached by their message too, so a peer flooded with one bad certificate
    pays for its check once.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._outcomes: OrderedDict[tuple[Hash32, Hash32], MemberCertificate | str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._outcomes)

    def verify(self, member_der: bytes, ca_der: bytes) -> MemberCertificate:
        """Like verify_member_certificate, answering repeated pairs from the cache."""
        key = (sha256(bytes(member_der)), sha256(bytes(ca_der)))
        with self._lock:
            outcome = self._outcomes.get(key)
            if outcome is not None:
                self._outcomes.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if outcome is None:
            # Verified outside the lock so other threads are not held up by the signature check.
            try:
                outcome = verify_member_certificate(member_der, ca_der)
            except CertificateError as exc:
                outcome = str(exc)
            with self._lock:
                self._outcomes[key] = outcome
                self._outcomes.move_to_end(key)
                while len(self._outcomes) > self.max_entries:
                    self._outcomes.popitem(last=False)
        if isinstance(outcome, str):
            raise CertificateError(outcome)
        return outcome


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    """What a member holds: its certificate and the private key matching it."""

    certificate: MemberCertificate
    """The member's parsed certificate."""

    key: SigningKey
    """The private key whose public half is in `certificate`."""

    def __post_init__(self) -> None:
        if self.key.public_key != self.certificate.public_key:
            raise CertificateError(f"the key does not match the certificate of member {self.certificate.name!r}")


@dataclass(frozen=True, slots=True)
class OrgCA:
    """An organisation's certificate authority: its key and self-signed certificate."""

    org_id: str
    """The organisation's id (subject O of every certificate it issues)."""

    kind: OrgKind
    """What kind of organisation this is."""

    key: SigningKey
    """The CA's Ed25519 private key."""

    certificate_der: bytes
    """The CA's self-signed certificate (DER)."""

    def __post_init__(self) -> None:
        ca = parse_ca_certificate(self.certificate_der)
        if ca.org_id != self.org_id or ca.kind != self.kind:
            raise CertificateError(
                f"CA certificate is for {ca.org_id!r} ({ca.kind}), not {self.org_id!r} ({self.kind})"
            )
        if ca.public_key != self.key.public_key:
            raise CertificateError(f"the key of CA {self.org_id!r} does not match its certificate")

    @classmethod
    def create(cls, org_id: str, kind: OrgKind, now_ms: int, valid_days: int = 3650) -> OrgCA:
        """A new CA with a fresh key and a self-signed certificate valid from `now_ms`."""
        check_name("organisation id", org_id)
        try:
            kind = OrgKind(kind)
        except ValueError as exc:
            raise CertificateError(f"unknown organisation kind {kind!r}; known kinds: {', '.join(OrgKind)}") from exc
        _check_validity_arguments(now_ms, valid_days)
        key = SigningKey.generate()
        private_key = Ed25519PrivateKey.from_private_bytes(key.seed)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind.value),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{org_id} CA"),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_ms_to_datetime(now_ms))
            .not_valid_after(_ms_to_datetime(now_ms + valid_days * _MS_PER_DAY))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False)
        )
        try:
            certificate = builder.sign(private_key, algorithm=None)
        except ValueError as exc:
            raise CertificateError(f"cannot build the CA certificate of {org_id!r}: {exc}") from exc
        return cls(
            org_id=org_id,
            kind=kind,
            key=key,
            certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        )

    @property
    def certificate(self) -> CACertificate:
        """The CA's parsed certificate."""
        return parse_ca_certificate(self.certificate_der)

    def issue(self, member_name: str, role: Role, public_key: bytes, now_ms: int, valid_days: int = 365) -> bytes:
        """A member certificate (DER) for `public_key`, valid from `now_ms` for `valid_days` days."""
        check_name("member name", member_name)
        try:
            role = Role(role)
        except ValueError as exc:
            raise CertificateError(f"unknown role {role!r}; known roles: {', '.join(Role)}") from exc
        _check_validity_arguments(now_ms, valid_days)
        try:
            member_key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError as exc:
            raise CertificateError(f"member public key is not a raw 32-byte Ed25519 key: {exc}") from exc
        ca_certificate = x509.load_der_x509_certificate(self.certificate_der)
        ca_key_identifier = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.org_id),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                        x509.NameAttribute(NameOID.COMMON_NAME, member_name),
                    ]
                )
            )
            .issuer_name(ca_certificate.subject)
            .public_key(member_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_ms_to_datetime(now_ms))
            .not_valid_after(_ms_to_datetime(now_ms + valid_days * _MS_PER_DAY))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_identifier),
                critical=False,
            )
        )
        private_key = Ed25519PrivateKey.from_private_bytes(self.key.seed)
        try:
            certificate = builder.sign(private_key, algorithm=None)
        except ValueError as exc:
            raise CertificateError(f"cannot build the certificate of {member_name!r}: {exc}") from exc
        return certificate.public_bytes(serialization.Encoding.DER)

    def enrol(self, member_name: str, role: Role, now_ms: int, valid_days: int = 365) -> MemberIdentity:
        """A new member: a fresh key and a certificate for it issued by this CA."""
        key = SigningKey.generate()
        der = self.issue(member_name, role, key.public_key, now_ms, valid_days)
        return MemberIdentity(certificate=parse_member_certificate(der), key=key)


# Keystore files. Names cannot contain '.', so "{org_id}.ca.*" never collides with a member's files.


def _member_paths(directory: Path, name: str) -> tuple[Path, Path]:
    check_name("member name", name)
    return directory / f"{name}.key.pem", directory / f"{name}.cert.pem"


def _ca_paths(directory: Path, org_id: str) -> tuple[Path, Path]:
    check_name("organisation id", org_id)
    return directory / f"{org_id}.ca.key.pem", directory / f"{org_id}.ca.cert.pem"


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # Written to a private temporary file and renamed, so a crash never leaves half a key and
    # the key is never readable by others, not even for an instant.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary_name, mode)
        os.replace(temporary_name, path)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise


def _private_key_pem(key: SigningKey) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(key.seed).private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _certificate_pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CertificateError(f"keystore file {path} does not exist: enrol the identity or copy it here") from exc
    except OSError as exc:
        raise CertificateError(f"cannot read keystore file {path}: {exc}") from exc


def _load_private_key(path: Path) -> SigningKey:
    try:
        private_key = serialization.load_pem_private_key(_read_file(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{path} is not an unencrypted PKCS8 PEM private key: {exc}") from exc
    if not isinstance(private_key, Ed25519PrivateKey):
        raise CertificateError(f"{path} holds a {type(private_key).__name__}, not an Ed25519 key")
    return SigningKey(private_key.private_bytes_raw())


def _load_certificate_der(path: Path) -> bytes:
    try:
        certificate = x509.load_pem_x509_certificate(_read_file(path))
    except ValueError as exc:
        raise CertificateError(f"{path} is not a PEM certificate: {exc}") from exc
    return certificate.public_bytes(serialization.Encoding.DER)


def save_identity(directory: Path, identity: MemberIdentity) -> None:
    """Write `{name}.key.pem` (mode 0600) and `{name}.cert.pem` for `identity` into `directory`."""
    key_path, certificate_path = _member_paths(directory, identity.certificate.name)
    _write_file(key_path, _private_key_pem(identity.key), 0o600)
    _write_file(certificate_path, _certificate_pem(identity.certificate.der), 0o644)


def load_identity(directory: Path, name: str) -> MemberIdentity:
    """Read back the identity that save_identity wrote for member `name`."""
    key_path, certificate_path = _member_paths(directory, name)
    certificate = parse_member_certificate(_load_certificate_der(certificate_path))
    if certificate.name != name:
        raise CertificateError(f"{certificate_path} is the certificate of {certificate.name!r}, not {name!r}")
    return MemberIdentity(certificate=certificate, key=_load_private_key(key_path))


def save_org_ca(directory: Path, ca: OrgCA) -> None:
    """Write `{org_id}.ca.key.pem` (mode 0600) and `{org_id}.ca.cert.pem` for `ca` into `directory`."""
    key_path, certificate_path = _ca_paths(directory, ca.org_id)
    _write_file(key_path, _private_key_pem(ca.key), 0o600)
    _write_file(certificate_path, _certificate_pem(ca.certificate_der), 0o644)


def load_org_ca(directory: Path, org_id: str) -> OrgCA:
    """Read back the CA that save_org_ca wrote; its kind comes from the certificate's OU."""
    key_path, certificate_path = _ca_paths(directory, org_id)
    certificate_der = _load_certificate_der(certificate_path)
    ca = parse_ca_certificate(certificate_der)
    if ca.org_id != org_id:
        raise CertificateError(f"{certificate_path} is the CA certificate of {ca.org_id!r}, not {org_id!r}")
    return OrgCA(org_id=org_id, kind=ca.kind, key=_load_private_key(key_path), certificate_der=certificate_der)
