"""Tests of organisation CAs and member certificates: issue, parse, verify, cache and keystore."""

from __future__ import annotations

import datetime
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from medledger.core.errors import CertificateError
from medledger.core.hashing import sha256
from medledger.core.identity import (
    CertificateVerifier,
    MemberIdentity,
    OrgCA,
    OrgKind,
    Role,
    load_identity,
    load_org_ca,
    parse_ca_certificate,
    parse_member_certificate,
    save_identity,
    save_org_ca,
    verify_member_certificate,
)
from medledger.core.signing import Domain, SigningKey, signature_is_valid

NOW_MS = 1_700_000_000_123
"""A block time with a sub-second part, to show that certificate times round down to whole seconds."""

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def hospital_ca() -> OrgCA:
    return OrgCA.create("st-marys", OrgKind.HOSPITAL, NOW_MS)


@pytest.fixture(scope="module")
def insurer_ca() -> OrgCA:
    return OrgCA.create("acme-health", OrgKind.INSURER, NOW_MS)


@pytest.fixture(scope="module")
def clinician(hospital_ca: OrgCA) -> MemberIdentity:
    return hospital_ca.enrol("dr-alice", Role.CLINICIAN, NOW_MS, valid_days=30)


def build_certificate(
    subject: list[x509.NameAttribute[str]],
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signing_key: Ed25519PrivateKey,
    *,
    ca: bool = False,
) -> bytes:
    """A certificate with free-form contents, for shapes OrgCA.issue would never produce."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(signing_key, algorithm=None).public_bytes(serialization.Encoding.DER)


def ca_subject(ca: OrgCA) -> x509.Name:
    return x509.load_der_x509_certificate(ca.certificate_der).subject


def ca_private_key(ca: OrgCA) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(ca.key.seed)


def member_subject(org: str, role: str, name: str) -> list[x509.NameAttribute[str]]:
    return [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ]


def test_issue_and_parse_round_trip(hospital_ca: OrgCA) -> None:
    # Prepare
    member_key = SigningKey.generate()

    # Execute
    der = hospital_ca.issue("nurse-bob", Role.NURSE, member_key.public_key, NOW_MS, valid_days=10)
    certificate = parse_member_certificate(der)

    # Assert
    assert certificate.der == der
    assert certificate.cert_id == sha256(der).hex()
    assert certificate.org_id == "st-marys"
    assert certificate.role is Role.NURSE
    assert certificate.name == "nurse-bob"
    assert certificate.public_key == member_key.public_key
    assert certificate.not_before_ms == NOW_MS - NOW_MS % 1000
    assert certificate.not_after_ms == (NOW_MS + 10 * DAY_MS) - (NOW_MS + 10 * DAY_MS) % 1000
    assert certificate.serial > 0


def test_serials_are_random(hospital_ca: OrgCA) -> None:
    key = SigningKey.generate()
    first = parse_member_certificate(hospital_ca.issue("dr-carol", Role.CLINICIAN, key.public_key, NOW_MS))
    second = parse_member_certificate(hospital_ca.issue("dr-carol", Role.CLINICIAN, key.public_key, NOW_MS))
    assert first.serial != second.serial
    assert first.cert_id != second.cert_id


def test_member_certificate_has_the_promised_shape(hospital_ca: OrgCA, clinician: MemberIdentity) -> None:
    # Prepare
    certificate = x509.load_der_x509_certificate(clinician.certificate.der)
    ca_certificate = x509.load_der_x509_certificate(hospital_ca.certificate_der)

    # Execute
    basic_constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    authority_key_id = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    subject_key_id = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    # Assert
    assert certificate.issuer == ca_certificate.subject
    assert basic_constraints.critical
    assert not basic_constraints.value.ca
    assert key_usage.digital_signature
    assert not key_usage.key_cert_sign
    assert authority_key_id.key_identifier == subject_key_id.digest


def test_ca_certificate_round_trip(hospital_ca: OrgCA) -> None:
    # Execute
    ca = parse_ca_certificate(hospital_ca.certificate_der)
    x509_certificate = x509.load_der_x509_certificate(hospital_ca.certificate_der)

    # Assert
    assert ca.org_id == "st-marys"
    assert ca.kind is OrgKind.HOSPITAL
    assert ca.public_key == hospital_ca.key.public_key
    assert ca.cert_id == sha256(hospital_ca.certificate_der).hex()
    assert ca.not_before_ms == NOW_MS - NOW_MS % 1000
    assert ca.valid_at(NOW_MS + 3649 * DAY_MS)
    assert hospital_ca.certificate == ca
    assert x509_certificate.subject.rfc4514_string() == "CN=st-marys CA,OU=hospital,O=st-marys"
    basic_constraints = x509_certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic_constraints.critical
    assert basic_constraints.value.ca
    assert basic_constraints.value.path_length == 0


def test_verify_against_the_issuing_ca_passes(hospital_ca: OrgCA, clinician: MemberIdentity) -> None:
    certificate = verify_member_certificate(clinician.certificate.der, hospital_ca.certificate_der)
    assert certificate == clinician.certificate


def test_verify_against_another_orgs_ca_fails(insurer_ca: OrgCA, clinician: MemberIdentity) -> None:
    with pytest.raises(CertificateError, match="issuer"):
        verify_member_certificate(clinician.certificate.der, insurer_ca.certificate_der)


def test_verify_against_an_impostor_ca_with_the_same_name_fails(clinician: MemberIdentity) -> None:
    # Prepare: another CA that claims to be st-marys has the same subject but another key.
    impostor = OrgCA.create("st-marys", OrgKind.HOSPITAL, NOW_MS)

    # Execute / Assert
    with pytest.raises(CertificateError, match=r"signature under the key of CA .* does not verify"):
        verify_member_certificate(clinician.certificate.der, impostor.certificate_der)


def test_member_of_another_org_under_the_ca_name_fails(hospital_ca: OrgCA) -> None:
    # Prepare: signed by the right CA key, but naming another organisation in its subject.
    der = build_certificate(
        member_subject("acme-health", "admin", "mallory"),
        ca_subject(hospital_ca),
        Ed25519PrivateKey.generate().public_key(),
        ca_private_key(hospital_ca),
    )

    # Execute / Assert
    with pytest.raises(CertificateError, match="belongs to organisation 'acme-health'"):
        verify_member_certificate(der, hospital_ca.certificate_der)


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_every_single_bit_flip_is_rejected(hospital_ca: OrgCA, clinician: MemberIdentity) -> None:
    # Outside the signed part are the DER envelope, the algorithm and the signature's bit
    # string header; flipping those must fail too, or one certificate could have two cert_ids.
    der = clinician.certificate.der
    for position in range(len(der)):
        for bit in (0x01, 0x80):
            tampered = bytearray(der)
            tampered[position] ^= bit
            with pytest.raises(CertificateError):
                verify_member_certificate(bytes(tampered), hospital_ca.certificate_der)


def test_every_single_bit_flip_of_the_ca_is_rejected(hospital_ca: OrgCA) -> None:
    der = hospital_ca.certificate_der
    for position in range(len(der)):
        tampered = bytearray(der)
        tampered[position] ^= 0x01
        with pytest.raises(CertificateError):
            parse_ca_certificate(bytes(tampered))


def test_trailing_and_truncated_bytes_are_rejected(clinician: MemberIdentity) -> None:
    der = clinician.certificate.der
    with pytest.raises(CertificateError):
        parse_member_certificate(der + b"\x00")
    with pytest.raises(CertificateError):
        parse_member_certificate(der[:-1])


def test_member_certificate_is_not_a_ca_certificate(clinician: MemberIdentity) -> None:
    with pytest.raises(CertificateError, match="not a CA certificate"):
        parse_ca_certificate(clinician.certificate.der)


def test_ca_certificate_is_not_a_member_certificate(hospital_ca: OrgCA) -> None:
    with pytest.raises(CertificateError, match="is a CA certificate"):
        parse_member_certificate(hospital_ca.certificate_der)


def test_ca_certificate_cannot_pass_as_a_member_of_its_own_org(hospital_ca: OrgCA) -> None:
    with pytest.raises(CertificateError, match="is a CA certificate"):
        verify_member_certificate(hospital_ca.certificate_der, hospital_ca.certificate_der)


def test_valid_at_before_during_and_after(clinician: MemberIdentity) -> None:
    certificate = clinician.certificate
    assert not certificate.valid_at(certificate.not_before_ms - 1)
    assert certificate.valid_at(certificate.not_before_ms)
    assert certificate.valid_at(NOW_MS)
    assert certificate.valid_at(NOW_MS + 29 * DAY_MS)
    assert certificate.valid_at(certificate.not_after_ms)
    assert not certificate.valid_at(certificate.not_after_ms + 1)
    assert not certificate.valid_at(NOW_MS + 31 * DAY_MS)


def test_verifier_caches_successes(hospital_ca: OrgCA, clinician: MemberIdentity) -> None:
    # Prepare
    verifier = CertificateVerifier()

    # Execute
    first = verifier.verify(clinician.certificate.der, hospital_ca.certificate_der)
    second = verifier.verify(clinician.certificate.der, hospital_ca.certificate_der)

    # Assert
    assert first == second == clinician.certificate
    assert (verifier.hits, verifier.misses) == (1, 1)
    assert len(verifier) == 1


def test_verifier_caches_failures(insurer_ca: OrgCA, clinician: MemberIdentity) -> None:
    # Prepare
    verifier = CertificateVerifier()

    # Execute
    with pytest.raises(CertificateError, match="issuer") as first:
        verifier.verify(clinician.certificate.der, insurer_ca.certificate_der)
    with pytest.raises(CertificateError) as second:
        verifier.verify(clinician.certificate.der, insurer_ca.certificate_der)

    # Assert
    assert str(first.value) == str(second.value)
    assert (verifier.hits, verifier.misses) == (1, 1)


def test_verifier_keys_on_both_certificates(hospital_ca: OrgCA, insurer_ca: OrgCA, clinician: MemberIdentity) -> None:
    verifier = CertificateVerifier()
    verifier.verify(clinician.certificate.der, hospital_ca.certificate_der)
    with pytest.raises(CertificateError):
        verifier.verify(clinician.certificate.der, insurer_ca.certificate_der)
    assert (verifier.hits, verifier.misses) == (0, 2)


def test_verifier_evicts_the_least_recently_used(hospital_ca: OrgCA) -> None:
    # Prepare
    verifier = CertificateVerifier(max_entries=2)
    members = [hospital_ca.enrol(f"member-{i}", Role.REGISTRAR, NOW_MS) for i in range(3)]
    ca_der = hospital_ca.certificate_der

    # Execute
    verifier.verify(members[0].certificate.der, ca_der)
    verifier.verify(members[1].certificate.der, ca_der)
    verifier.verify(members[0].certificate.der, ca_der)  # hit: member-0 is now the most recent
    verifier.verify(members[2].certificate.der, ca_der)  # evicts member-1
    verifier.verify(members[0].certificate.der, ca_der)  # still cached
    verifier.verify(members[1].certificate.der, ca_der)  # recomputed

    # Assert
    assert (verifier.hits, verifier.misses) == (2, 4)
    assert len(verifier) == 2


def test_verifier_is_safe_across_threads(hospital_ca: OrgCA, clinician: MemberIdentity) -> None:
    verifier = CertificateVerifier()
    errors: list[BaseException] = []

    def verify_many() -> None:
        try:
            for _ in range(200):
                verifier.verify(clinician.certificate.der, hospital_ca.certificate_der)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=verify_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert verifier.hits + verifier.misses == 1600
    assert len(verifier) == 1


def test_verifier_refuses_a_non_positive_size() -> None:
    with pytest.raises(ValueError):
        CertificateVerifier(max_entries=0)


def test_member_keystore_round_trip(tmp_path: Path, clinician: MemberIdentity) -> None:
    # Execute
    save_identity(tmp_path, clinician)
    loaded = load_identity(tmp_path, "dr-alice")

    # Assert
    assert loaded == clinician
    key_path = tmp_path / "dr-alice.key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "dr-alice.cert.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dr-alice.cert.pem", "dr-alice.key.pem"]


def test_ca_keystore_round_trip(tmp_path: Path, hospital_ca: OrgCA) -> None:
    # Execute
    save_org_ca(tmp_path, hospital_ca)
    loaded = load_org_ca(tmp_path, "st-marys")

    # Assert
    assert loaded == hospital_ca
    assert loaded.kind is OrgKind.HOSPITAL
    assert stat.S_IMODE((tmp_path / "st-marys.ca.key.pem").stat().st_mode) == 0o600


def test_ca_and_member_of_the_same_name_share_a_keystore(tmp_path: Path, hospital_ca: OrgCA) -> None:
    member = hospital_ca.enrol("st-marys", Role.ADMIN, NOW_MS)
    save_org_ca(tmp_path, hospital_ca)
    save_identity(tmp_path, member)
    assert load_org_ca(tmp_path, "st-marys") == hospital_ca
    assert load_identity(tmp_path, "st-marys") == member


def test_loading_a_missing_identity_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"ghost\.cert\.pem"):
        load_identity(tmp_path, "ghost")


def test_loading_a_key_that_does_not_match_the_certificate_fails(
    tmp_path: Path, hospital_ca: OrgCA, clinician: MemberIdentity
) -> None:
    # Prepare
    other = hospital_ca.enrol("dr-dave", Role.CLINICIAN, NOW_MS)
    save_identity(tmp_path, clinician)
    save_identity(tmp_path, other)
    (tmp_path / "dr-alice.key.pem").write_bytes((tmp_path / "dr-dave.key.pem").read_bytes())

    # Execute / Assert
    with pytest.raises(CertificateError, match="does not match"):
        load_identity(tmp_path, "dr-alice")


@pytest.mark.parametrize("bad_name", ["", "a", "Alice", "-alice", "al ice", "../etc", "a.b", "x" * 64, "älice"])
def test_bad_names_are_rejected(hospital_ca: OrgCA, bad_name: str, tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="not valid"):
        OrgCA.create(bad_name, OrgKind.HOSPITAL, NOW_MS)
    with pytest.raises(CertificateError, match="not valid"):
        hospital_ca.issue(bad_name, Role.NURSE, SigningKey.generate().public_key, NOW_MS)
    with pytest.raises(CertificateError, match="not valid"):
        load_identity(tmp_path, bad_name)


@pytest.mark.parametrize("good_name", ["ab", "st-marys", "0x", "a" * 63, "ward-7-nurse"])
def test_good_names_are_accepted(hospital_ca: OrgCA, good_name: str) -> None:
    certificate = parse_member_certificate(
        hospital_ca.issue(good_name, Role.NURSE, SigningKey.generate().public_key, NOW_MS)
    )
    assert certificate.name == good_name


def test_issue_refuses_bad_arguments(hospital_ca: OrgCA) -> None:
    key = SigningKey.generate().public_key
    with pytest.raises(CertificateError, match="unknown role"):
        hospital_ca.issue("dr-eve", "surgeon", key, NOW_MS)  # type: ignore[arg-type]
    with pytest.raises(CertificateError, match="Ed25519"):
        hospital_ca.issue("dr-eve", Role.CLINICIAN, key[:31], NOW_MS)
    with pytest.raises(CertificateError, match="valid_days"):
        hospital_ca.issue("dr-eve", Role.CLINICIAN, key, NOW_MS, valid_days=0)
    with pytest.raises(CertificateError, match="now_ms"):
        hospital_ca.issue("dr-eve", Role.CLINICIAN, key, -1)


def test_org_ca_refuses_a_key_that_is_not_its_own(hospital_ca: OrgCA) -> None:
    with pytest.raises(CertificateError, match="does not match"):
        OrgCA(
            org_id="st-marys",
            kind=OrgKind.HOSPITAL,
            key=SigningKey.generate(),
            certificate_der=hospital_ca.certificate_der,
        )


def test_org_ca_refuses_a_certificate_of_another_org(hospital_ca: OrgCA) -> None:
    with pytest.raises(CertificateError, match="not 'acme-health'"):
        OrgCA(
            org_id="acme-health",
            kind=OrgKind.HOSPITAL,
            key=hospital_ca.key,
            certificate_der=hospital_ca.certificate_der,
        )


def test_member_identity_refuses_a_foreign_key(clinician: MemberIdentity) -> None:
    with pytest.raises(CertificateError, match="does not match"):
        MemberIdentity(certificate=clinician.certificate, key=SigningKey.generate())


def test_signature_by_member_key_verifies_with_certificate_key(clinician: MemberIdentity) -> None:
    # Prepare
    payload = b"tx-payload"

    # Execute
    signature = clinician.key.sign(Domain.TRANSACTION, payload)

    # Assert
    assert signature_is_valid(Domain.TRANSACTION, clinician.certificate.public_key, payload, signature)
    assert not signature_is_valid(Domain.BLOCK_ATTESTATION, clinician.certificate.public_key, payload, signature)


def test_not_der_is_rejected() -> None:
    with pytest.raises(CertificateError, match="not a well-formed DER"):
        parse_member_certificate(b"not a certificate")
    with pytest.raises(CertificateError, match="not a well-formed DER"):
        parse_ca_certificate(b"")


def test_non_ed25519_key_is_rejected(hospital_ca: OrgCA) -> None:
    der = build_certificate(
        member_subject("st-marys", "nurse", "nurse-ec"),
        ca_subject(hospital_ca),
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ca_private_key(hospital_ca),
    )
    with pytest.raises(CertificateError, match="not Ed25519"):
        parse_member_certificate(der)


def test_non_ed25519_signature_is_rejected() -> None:
    # Prepare
    signer = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name(member_subject("st-marys", "hospital", "st-marys CA"))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(member_subject("st-marys", "nurse", "nurse-ec")))
        .issuer_name(issuer)
        .public_key(Ed25519PrivateKey.generate().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    der = builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    # Execute / Assert
    with pytest.raises(CertificateError, match="not Ed25519"):
        parse_member_certificate(der)


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "nurse"),
                x509.NameAttribute(NameOID.COMMON_NAME, "n1"),
            ],
            "O",
        ),
        (
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "st-marys"), x509.NameAttribute(NameOID.COMMON_NAME, "n1")],
            "OU",
        ),
        (
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "st-marys"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "nurse"),
            ],
            "CN",
        ),
    ],
)
def test_missing_subject_attribute_is_named(
    hospital_ca: OrgCA, subject: list[x509.NameAttribute[str]], message: str
) -> None:
    der = build_certificate(
        subject, ca_subject(hospital_ca), Ed25519PrivateKey.generate().public_key(), ca_private_key(hospital_ca)
    )
    with pytest.raises(CertificateError, match=f"no {message} attribute"):
        parse_member_certificate(der)


def test_unknown_role_is_named(hospital_ca: OrgCA) -> None:
    der = build_certificate(
        member_subject("st-marys", "surgeon", "dr-frank"),
        ca_subject(hospital_ca),
        Ed25519PrivateKey.generate().public_key(),
        ca_private_key(hospital_ca),
    )
    with pytest.raises(CertificateError, match="unknown role 'surgeon'"):
        parse_member_certificate(der)


def test_ca_certificate_must_be_self_signed(hospital_ca: OrgCA) -> None:
    # Prepare: a CA-shaped certificate whose issuer is another CA.
    der = build_certificate(
        member_subject("sub-ca", "hospital", "sub-ca CA"),
        ca_subject(hospital_ca),
        Ed25519PrivateKey.generate().public_key(),
        ca_private_key(hospital_ca),
        ca=True,
    )

    # Execute / Assert
    with pytest.raises(CertificateError, match="not self-signed"):
        parse_ca_certificate(der)


def test_ca_self_signature_must_verify() -> None:
    # Prepare: issuer equals subject, but the key that signed is not the certified key.
    subject = member_subject("rogue", "hospital", "rogue CA")
    der = build_certificate(
        subject, x509.Name(subject), Ed25519PrivateKey.generate().public_key(), Ed25519PrivateKey.generate(), ca=True
    )

    # Execute / Assert
    with pytest.raises(CertificateError, match="self-signature does not verify"):
        parse_ca_certificate(der)


def test_every_role_and_kind_round_trips(hospital_ca: OrgCA) -> None:
    for role in Role:
        assert hospital_ca.enrol("member-x", role, NOW_MS).certificate.role is role
    for kind in OrgKind:
        assert parse_ca_certificate(OrgCA.create("org-x", kind, NOW_MS).certificate_der).kind is kind
