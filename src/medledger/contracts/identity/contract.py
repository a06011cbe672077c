"""State transitions of the identity contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from medledger.contracts.framework import Args, Contract, ContractError
from medledger.core.encoding import encode
from medledger.core.errors import CertificateError
from medledger.core.hashing import tagged_hash
from medledger.core.identity import (
    MemberCertificate,
    OrgKind,
    Role,
    parse_ca_certificate,
    parse_member_certificate,
    verify_member_certificate,
)
from medledger.core.signing import Domain, signature_is_valid
from medledger.ledger.execution import SignerKind, TxContext
from medledger.ledger.state import TxState

IDENTITY = Contract("identity")

PSEUDONYM_TAG = "medledger/patient-pseudonym/v1"
PSEUDONYM_HEX_LENGTH = 32

Key32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
OrgId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
CertId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Certificate = Annotated[bytes, msgspec.Meta(min_length=32, max_length=8192)]

ACTIVE = "active"
REVOKED = "revoked"


def org_key(org_id: str) -> str:
    return f"identity/org/{org_id}"


def org_proposal_key(org_id: str) -> str:
    return f"identity/org-proposal/{org_id}"


def member_key(cert_id: str) -> str:
    return f"identity/member/{cert_id}"


def patient_key(pseudonym: str) -> str:
    return f"identity/patient/{pseudonym}"


def patient_pseudonym(sign_public_key: bytes) -> str:
    """A patient's ledger id: derived from their wallet's signing key, revealing nothing else."""
    return tagged_hash(PSEUDONYM_TAG, sign_public_key).hex()[:PSEUDONYM_HEX_LENGTH]


def enrolment_payload(channel: str, sign_key: bytes, encryption_key: bytes) -> bytes:
    """What a patient signs to prove they hold the wallet being enrolled."""
    return encode([channel, sign_key, encryption_key])


def _member_record(cert: MemberCertificate, registered_at: int) -> dict[str, Any]:
    return {
        "cert_id": cert.cert_id,
        "org_id": cert.org_id,
        "role": cert.role.value,
        "name": cert.name,
        "certificate": cert.der,
        "status": ACTIVE,
        "registered_at": registered_at,
    }


def _org_record(org_id: str, kind: str, ca_cert: bytes, joined_at: int) -> dict[str, Any]:
    return {"org_id": org_id, "kind": kind, "ca_certificate": ca_cert, "status": ACTIVE, "joined_at": joined_at}


def _verify_new_member(state: TxState, certificate: bytes, at_ms: int) -> MemberCertificate:
    """Check a certificate presented for registration against its organisation's CA."""
    try:
        claimed = parse_member_certificate(certificate)
    except CertificateError as exc:
        raise ContractError("CERT_INVALID", f"certificate does not parse: {exc}") from exc
    org = state.get(org_key(claimed.org_id))
    if org is None or org["status"] != ACTIVE:
        raise ContractError("UNKNOWN_ORG", f"organisation {claimed.org_id!r} is not an active member of the network")
    try:
        cert = verify_member_certificate(certificate, org["ca_certificate"])
    except CertificateError as exc:
        raise ContractError("CERT_INVALID", f"certificate not issued by {claimed.org_id}'s CA: {exc}") from exc
    if not cert.valid_at(at_ms):
        raise ContractError("CERT_EXPIRED", f"certificate {cert.cert_id} is not valid at block time {at_ms}")
    if state.exists(member_key(cert.cert_id)):
        raise ContractError("MEMBER_EXISTS", f"certificate {cert.cert_id} is already registered")
    return cert


def _require_same_org(ctx: TxContext, org_id: str, action: str) -> None:
    if ctx.signer.org_id != org_id:
        raise ContractError(
            "WRONG_ORGANISATION", f"{ctx.signer.org_id} cannot {action} a member of {org_id}: only its own admins can"
        )


class RegisterMember(Args, frozen=True):
    certificate: Certificate
    """DER X.509 certificate issued by the signer's organisation CA."""


@IDENTITY.function("register_member", RegisterMember, roles=[Role.ADMIN])
def register_member(state: TxState, ctx: TxContext, args: RegisterMember) -> None:
    cert = _verify_new_member(state, args.certificate, ctx.block_timestamp_ms)
    _require_same_org(ctx, cert.org_id, "register")
    state.put(member_key(cert.cert_id), _member_record(cert, ctx.block_timestamp_ms))
    ctx.emit("identity", "MemberRegistered", cert_id=cert.cert_id, org_id=cert.org_id, role=cert.role.value)


class RevokeMember(Args, frozen=True):
    cert_id: CertId
    reason: Reason


def _revoke(state: TxState, ctx: TxContext, cert_id: str, reason: str) -> dict[str, Any]:
    member = state.get(member_key(cert_id))
    if member is None:
        raise ContractError("UNKNOWN_MEMBER", f"no member with certificate {cert_id}")
    if member["status"] == REVOKED:
        raise ContractError("ALREADY_REVOKED", f"certificate {cert_id} was revoked already")
    _require_same_org(ctx, member["org_id"], "revoke")
    member = {**member, "status": REVOKED, "revoked_at": ctx.block_timestamp_ms, "revocation_reason": reason}
    state.put(member_key(cert_id), member)
    ctx.emit("identity", "MemberRevoked", cert_id=cert_id, org_id=member["org_id"], reason=reason)
    return member


@IDENTITY.function("revoke_member", RevokeMember, roles=[Role.ADMIN])
def revoke_member(state: TxState, ctx: TxContext, args: RevokeMember) -> None:
    _revoke(state, ctx, args.cert_id, args.reason)


class RotateMember(Args, frozen=True):
    cert_id: CertId
    """The certificate being replaced (it is revoked)."""
    certificate: Certificate
    """The new certificate: same organisation, name and role."""


@IDENTITY.function("rotate_member", RotateMember, roles=[Role.ADMIN])
def rotate_member(state: TxState, ctx: TxContext, args: RotateMember) -> None:
    new = _verify_new_member(state, args.certificate, ctx.block_timestamp_ms)
    old = state.get(member_key(args.cert_id))
    if old is not None and (new.org_id, new.name, new.role.value) != (old["org_id"], old["name"], old["role"]):
        raise ContractError("ROTATION_MISMATCH", "a rotated certificate must keep organisation, name and role")
    _revoke(state, ctx, args.cert_id, f"rotated to {new.cert_id}")
    state.put(member_key(new.cert_id), {**_member_record(new, ctx.block_timestamp_ms), "rotated_from": args.cert_id})
    ctx.emit("identity", "MemberRotated", old_cert_id=args.cert_id, cert_id=new.cert_id, org_id=new.org_id)


class RegisterPatient(Args, frozen=True):
    sign_key: Key32
    """The patient's wallet Ed25519 public key."""
    encryption_key: Key32
    """The patient's wallet X25519 public key."""
    enrolment_signature: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
    """The patient's signature over (channel, sign_key, encryption_key): proof they hold the wallet."""


@IDENTITY.function("register_patient", RegisterPatient, roles=[Role.REGISTRAR, Role.CLINICIAN, Role.ADMIN])
def register_patient(state: TxState, ctx: TxContext, args: RegisterPatient) -> None:
    if ctx.signer.org_kind != OrgKind.HOSPITAL.value:
        raise ContractError("WRONG_ORGANISATION", "patients are enrolled by hospitals")
    payload = enrolment_payload(ctx.channel, args.sign_key, args.encryption_key)
    if not signature_is_valid(Domain.PATIENT_ENROLMENT, args.sign_key, payload, args.enrolment_signature):
        raise ContractError("BAD_ENROLMENT_SIGNATURE", "the enrolment is not signed by the patient's wallet key")
    pseudonym = patient_pseudonym(args.sign_key)
    if state.exists(patient_key(pseudonym)):
        raise ContractError("PATIENT_EXISTS", f"patient {pseudonym} is already enrolled")
    state.put(
        patient_key(pseudonym),
        {
            "pseudonym": pseudonym,
            "sign_key": args.sign_key,
            "encryption_key": args.encryption_key,
            "enrolled_by": ctx.signer.org_id,
            "enrolled_at": ctx.block_timestamp_ms,
            "status": ACTIVE,
        },
    )
    ctx.emit("identity", "PatientEnrolled", pseudonym=pseudonym, org_id=ctx.signer.org_id)


class ProposeOrg(Args, frozen=True):
    org_id: OrgId
    kind: str
    ca_certificate: Certificate


@IDENTITY.function("propose_org", ProposeOrg, roles=[Role.ADMIN])
def propose_org(state: TxState, ctx: TxContext, args: ProposeOrg) -> None:
    try:
        kind = OrgKind(args.kind)
        ca = parse_ca_certificate(args.ca_certificate)
    except (ValueError, CertificateError) as exc:
        raise ContractError("BAD_ORGANISATION", f"organisation proposal refused: {exc}") from exc
    if ca.org_id != args.org_id:
        raise ContractError("BAD_ORGANISATION", f"CA certificate names {ca.org_id!r}, not {args.org_id!r}")
    if state.exists(org_key(args.org_id)) or state.exists(org_proposal_key(args.org_id)):
        raise ContractError("ORG_EXISTS", f"organisation {args.org_id!r} exists or is already proposed")
    proposal: dict[str, Any] = {
        "org_id": args.org_id,
        "kind": kind.value,
        "ca_certificate": args.ca_certificate,
        "approvals": [],
    }
    state.put(org_proposal_key(args.org_id), proposal)
    ctx.emit("identity", "OrgProposed", org_id=args.org_id, kind=kind.value, by=ctx.signer.org_id)
    _approve(state, ctx, args.org_id)


class ApproveOrg(Args, frozen=True):
    org_id: OrgId


@IDENTITY.function("approve_org", ApproveOrg, roles=[Role.ADMIN])
def approve_org(state: TxState, ctx: TxContext, args: ApproveOrg) -> None:
    _approve(state, ctx, args.org_id)


def _approve(state: TxState, ctx: TxContext, org_id: str) -> None:
    """Add the signer's organisation to the approvals; admit the organisation at a strict majority."""
    proposal = state.get(org_proposal_key(org_id))
    if proposal is None:
        raise ContractError("UNKNOWN_PROPOSAL", f"no pending proposal for organisation {org_id!r}")
    approver = ctx.signer.org_id
    if approver in proposal["approvals"]:
        raise ContractError("ALREADY_APPROVED", f"{approver} approved {org_id!r} already")
    approvals = sorted([*proposal["approvals"], approver])
    active = sum(1 for _, org in state.scan("identity/org/") if org["status"] == ACTIVE)
    ctx.emit("identity", "OrgApproved", org_id=org_id, by=approver, approvals=len(approvals), of=active)
    if 2 * len(approvals) > active:
        state.delete(org_proposal_key(org_id))
        state.put(
            org_key(org_id), _org_record(org_id, proposal["kind"], proposal["ca_certificate"], ctx.block_timestamp_ms)
        )
        ctx.emit("identity", "OrgAdmitted", org_id=org_id, kind=proposal["kind"])
    else:
        state.put(org_proposal_key(org_id), {**proposal, "approvals": approvals})


# queries -------------------------------------------------------------------------------


class GetById(Args, frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


@IDENTITY.query("org", GetById)
def query_org(state: TxState, args: GetById) -> Any:
    return state.get(org_key(args.id))


@IDENTITY.query("member", GetById)
def query_member(state: TxState, args: GetById) -> Any:
    return state.get(member_key(args.id))


@IDENTITY.query("patient", GetById)
def query_patient(state: TxState, args: GetById) -> Any:
    return state.get(patient_key(args.id))


class NoArgs(Args, frozen=True):
    pass


@IDENTITY.query("orgs", NoArgs)
def query_orgs(state: TxState, args: NoArgs) -> Any:
    return [org for _, org in state.scan("identity/org/")]


# genesis --------------------------------------------------------------------------------


def apply_genesis(state: TxState, config: Mapping[str, Any], timestamp_ms: int) -> None:
    """Write the founding organisations and their first members (admins and peers)."""
    for org in config["orgs"]:
        ca = parse_ca_certificate(org["ca_certificate"])
        if ca.org_id != org["org_id"]:
            raise CertificateError(f"genesis CA certificate names {ca.org_id!r}, not {org['org_id']!r}")
        OrgKind(org["kind"])
        state.put(org_key(org["org_id"]), _org_record(org["org_id"], org["kind"], org["ca_certificate"], timestamp_ms))
        for certificate in org["members"]:
            cert = verify_member_certificate(certificate, org["ca_certificate"])
            state.put(member_key(cert.cert_id), _member_record(cert, timestamp_ms))


def signer_is_patient(ctx: TxContext, pseudonym: str) -> bool:
    return ctx.signer.kind is SignerKind.PATIENT and ctx.signer.id == pseudonym
