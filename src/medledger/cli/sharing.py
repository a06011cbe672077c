"""Commands of the record-sharing workflow: patient, record, consent, access and audit.

Each command opens the embedded network in --data-dir, acts as the named member (keys in
keys/<org>/<name>) or patient (wallet in wallets/), prints the outcome and stops the network.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medledger.cli.output import console
from medledger.core.errors import MedledgerError
from medledger.node.session import NetworkSession
from medledger.sdk import PatientWallet
from medledger.sdk.wallet import save_wallet
from medledger.standards.audit_event import audit_bundle_json

DataDir = Annotated[Path, typer.Option("--data-dir", help="The network's data directory.")]
Org = Annotated[str, typer.Option("--org", help="Organisation id, e.g. st-mary.")]
As = Annotated[str, typer.Option("--as", help="Member name in the organisation's keystore, e.g. registrar.")]
Patient = Annotated[str, typer.Option("--patient", help="Patient pseudonym (a unique prefix is enough).")]
DEFAULT_DIR = Path("demo-data")

patient_app = typer.Typer(help="Enrol patients (their wallets are kept in DATA_DIR/wallets).", no_args_is_help=True)
record_app = typer.Typer(
    help="Put records into a hospital's vault and index; get and trace them.", no_args_is_help=True
)
consent_app = typer.Typer(help="A patient's consents: grant, revoke, list.", no_args_is_help=True)
access_app = typer.Typer(help="Ask for access to a record; the decision goes on the ledger.", no_args_is_help=True)
audit_app = typer.Typer(
    help="A patient's audit trail: who did what, when, why, with what outcome.", no_args_is_help=True
)


def _full_pseudonym(session: NetworkSession, prefix: str) -> str:
    return session.wallet(prefix).pseudonym


@patient_app.command("enrol")
def patient_enrol(org: Org, member: As, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Create a patient wallet and have a hospital member enrol it."""
    with NetworkSession(data_dir) as session:
        wallet = PatientWallet.generate()
        client = session.member_client(org, member)
        client.submit("identity", "register_patient", wallet.enrolment_args(session.network.channel))
        path = save_wallet(data_dir / "wallets", wallet)
    console.print(f"enrolled patient [bold]{wallet.pseudonym}[/] (wallet {path})")


def _detect_format(data: bytes) -> str:
    if data[128:132] == b"DICM":
        return "dicom"
    if data.lstrip(b"\x0b").startswith(b"MSH"):
        return "hl7"
    return "fhir"


@record_app.command("put")
def record_put(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="FHIR JSON, HL7 v2 or DICOM.")
    ],
    org: Org,
    member: As,
    patient: Patient,
    data_dir: DataDir = DEFAULT_DIR,
    kind: Annotated[str, typer.Option("--format", help="fhir, hl7, dicom or auto.")] = "auto",
) -> None:
    """Ingest a file: validate, encrypt into the vault, register on the ledger."""
    data = file.read_bytes()
    chosen = _detect_format(data) if kind == "auto" else kind
    if chosen not in {"fhir", "hl7", "dicom"}:
        raise typer.BadParameter(f"unknown format {kind!r}: use fhir, hl7, dicom or auto", param_hint="--format")
    with NetworkSession(data_dir) as session:
        pseudonym = _full_pseudonym(session, patient)
        ingestor = session.ingestor(org, member)
        if chosen == "fhir":
            records = ingestor.put_fhir(pseudonym, data)
        elif chosen == "hl7":
            records = ingestor.put_hl7(pseudonym, data)
        else:
            records = [ingestor.put_dicom(pseudonym, data)]
    table = Table(title=f"{len(records)} record(s) registered")
    for column in ("record id", "type", "category", "clinical date", "locator"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record.record_id, record.resource_type, record.category or "", record.clinical_date, record.locator
        )
    console.print(table)


@record_app.command("get")
def record_get(
    decision: Annotated[str, typer.Argument(help="The access decision (a permit) to fetch under.")],
    org: Org,
    member: As,
    data_dir: DataDir = DEFAULT_DIR,
    out: Annotated[Path | None, typer.Option("--out", help="Write the record here (default: print it).")] = None,
) -> None:
    """Fetch a record from its vault under a permit; check it against the ledger's hash and proof."""
    with NetworkSession(data_dir) as session:
        verified = session.fetch_record(org, member, decision)
    console.print(
        f"[green]verified[/]: record {verified.record['record_id']} matches its on-chain hashes; "
        f"registration proven in block {verified.block_number}",
        highlight=False,
    )
    if out is not None:
        out.write_bytes(verified.plaintext)
        console.print(f"written to {out}")
    else:
        print(verified.plaintext.decode("utf-8", errors="replace"))


@record_app.command("history")
def record_history(record_id: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Every version of a record, newest first."""
    with NetworkSession(data_dir) as session:
        versions = session.query("records", "history", record_id=record_id)
    if not versions:
        raise MedledgerError(f"no record {record_id}")
    table = Table(title=f"history of {record_id}")
    for column in ("version", "record id", "status", "clinical date", "source", "reason"):
        table.add_column(column)
    for entry in versions:
        table.add_row(
            str(entry["version"]),
            entry["record_id"],
            entry["status"],
            entry["clinical_date"],
            entry["source_org"],
            entry.get("amend_reason") or "",
        )
    console.print(table)


def _date_window_start(since: str | None, last_months: int | None, now_ms: int) -> str | None:
    if since is not None:
        return since
    if last_months is None:
        return None
    today = datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC).date()
    month = today.month - last_months
    year = today.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return f"{year:04d}-{month:02d}-{min(today.day, 28):02d}"


@consent_app.command("grant")
def consent_grant(
    patient: Patient,
    grantee: Annotated[str, typer.Option("--grantee", help="org:<id>, role:<role> or member:<cert id>.")],
    purpose: Annotated[list[str], typer.Option("--purpose", help="TREAT, ETREAT, HRESCH, HPAYMT, PUBHLTH, ...")],
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="How long the consent lasts.")],
    data_dir: DataDir = DEFAULT_DIR,
    resource_type: Annotated[list[str] | None, typer.Option("--type", help="FHIR resource types.")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="e.g. laboratory, imaging.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only data from this clinical date.")] = None,
    last_months: Annotated[int | None, typer.Option("--last-months", min=1, help="Only the last N months.")] = None,
    deny: Annotated[bool, typer.Option("--deny", help="A deny provision, overriding permits.")] = False,
) -> None:
    """Grant (or, with --deny, refuse) access to the patient's data."""
    kind, _, value = grantee.partition(":")
    if kind not in {"org", "role", "member"} or not value:
        raise typer.BadParameter("use org:<id>, role:<role> or member:<cert id>", param_hint="--grantee")
    with NetworkSession(data_dir) as session:
        client = session.patient_client(patient)
        now = session.network.clock()
        scope: dict[str, Any] = {"resource_types": resource_type or [], "categories": category or []}
        start = _date_window_start(since, last_months, now)
        if start is not None:
            scope["date_from"] = start
        receipt = client.submit(
            "consent",
            "grant",
            {
                "provision": "deny" if deny else "permit",
                "grantee": {kind: value},
                "purposes": [p.upper() for p in purpose],
                "scope": scope,
                "valid_from": now,
                "valid_until": now + days * 86_400_000,
            },
        )
    console.print(f"consent [bold]{receipt.events[0].attributes['consent_id']}[/] granted")


@consent_app.command("revoke")
def consent_revoke(patient: Patient, consent_id: str, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Revoke a consent: from the next block on, no vault serves under it."""
    with NetworkSession(data_dir) as session:
        session.patient_client(patient).submit("consent", "revoke", {"consent_id": consent_id})
    console.print(f"consent {consent_id} revoked")


@consent_app.command("list")
def consent_list(patient: Patient, data_dir: DataDir = DEFAULT_DIR) -> None:
    """The patient's consents."""
    with NetworkSession(data_dir) as session:
        pseudonym = _full_pseudonym(session, patient)
        consents = session.query("consent", "list", patient=pseudonym)
    table = Table(title=f"consents of {pseudonym}")
    for column in ("consent id", "status", "provision", "grantee", "purposes", "scope", "valid until (ms)"):
        table.add_column(column)
    for c in consents:
        grantee = ", ".join(f"{k}:{v}" for k, v in c["grantee"].items() if v)
        scope = ", ".join(f"{k}={v}" for k, v in c["scope"].items() if v)
        table.add_row(
            c["consent_id"], c["status"], c["provision"], grantee, ",".join(c["purposes"]), scope, str(c["valid_until"])
        )
    console.print(table)


@access_app.command("request")
def access_request(
    record_id: str,
    org: Org,
    member: As,
    purpose: Annotated[str, typer.Option("--purpose", help="TREAT, ETREAT (break-glass), HRESCH, ...")] = "TREAT",
    justification: Annotated[str | None, typer.Option("--justification", help="Mandatory for ETREAT.")] = None,
    data_dir: DataDir = DEFAULT_DIR,
) -> None:
    """Ask for a record; print the on-chain decision and its reason."""
    with NetworkSession(data_dir) as session:
        client = session.member_client(org, member)
        args: dict[str, Any] = {"record_id": record_id, "purpose": purpose.upper()}
        if justification:
            args["justification"] = justification
        receipt = client.submit("access", "request", args)
        decision = client.query("access", "decision", decision_id=receipt.events[0].attributes["decision_id"])
    colour = "green" if decision["outcome"] == "permit" else "red"
    flags = f" [{', '.join(decision['flags'])}]" if decision["flags"] else ""
    console.print(f"decision [bold]{decision['decision_id']}[/]: [{colour}]{decision['outcome']}[/]{flags}")
    console.print(f"reason: {decision['reason']}", markup=False)


def _trail(session: NetworkSession, patient: str) -> list[dict[str, Any]]:
    return list(session.query("audit", "trail", patient=_full_pseudonym(session, patient)))


def render_trail(trail: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("block", "time (UTC)", "event", "who", "org", "purpose", "outcome", "detail"):
        table.add_column(column)
    for e in trail:
        when = datetime.datetime.fromtimestamp(e["recorded_ms"] / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        outcome = {"0": "[green]ok[/]", "4": "[red]denied[/]", "8": "[red]failed[/]"}.get(e["outcome"], e["outcome"])
        detail = e["outcome_desc"] or ", ".join(e["entities"])
        flags = " ".join(f"[yellow]{f}[/]" for f in e["flags"])
        table.add_row(
            str(e["block"]),
            when,
            e["event"],
            e["agent"]["role"],
            e["agent"]["org"] or "patient",
            e["purpose"] or "",
            outcome,
            f"{flags} {detail}".strip(),
        )
    return table


@audit_app.command("trail")
def audit_trail(patient: Patient, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Everything that happened to the patient's data, in order."""
    with NetworkSession(data_dir) as session:
        trail = _trail(session, patient)
    console.print(render_trail(trail, f"audit trail ({len(trail)} entries)"))


@audit_app.command("export")
def audit_export(
    patient: Patient,
    data_dir: DataDir = DEFAULT_DIR,
    out: Annotated[Path | None, typer.Option("--out", help="Write the FHIR Bundle here (default: stdout).")] = None,
) -> None:
    """The trail as a FHIR Bundle of AuditEvent resources."""
    with NetworkSession(data_dir) as session:
        bundle = audit_bundle_json(_trail(session, patient))
    text = json.dumps(bundle, indent=2)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
        console.print(f"{len(bundle['entry'])} AuditEvents written to {out}")
