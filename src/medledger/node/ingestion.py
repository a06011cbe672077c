"""Ingestion at a hospital: clinical data in, an encrypted vault object and a ledger index entry out.

Each record is validated and brought to its canonical form by `medledger.standards`, encrypted
into the hospital's vault under its own data key, and registered on the ledger with the hash of
its canonical plaintext, the hash of its ciphertext, its locator, resource type, clinical date,
category and source organisation. Nothing identifying reaches the ledger: only hashes, codes
and dates. An amendment stores the new version and registers it linked to the old one.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from medledger.contracts.records import record_id_for
from medledger.core.hashing import Hash32
from medledger.ledger.receipts import Receipt
from medledger.sdk.client import LedgerClient
from medledger.standards import (
    FhirResource,
    StandardsError,
    clinical_summary,
    ingest_dicom,
    ingest_hl7,
    parse_bundle,
    parse_resource,
)
from medledger.standards.exact_json import loads as exact_loads
from medledger.vault import Vault

FHIR_MEDIA_TYPE = "application/fhir+json"
HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
DICOM_MEDIA_TYPE = "application/dicom"
_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


@dataclass(frozen=True, slots=True)
class IngestedRecord:
    """One record stored in the vault and registered on the ledger."""

    record_id: str
    """The ledger's id of the record (derived from its registration transaction)."""
    tx_id: bytes
    """The registration (or amendment) transaction."""
    resource_type: str
    """FHIR resource type (Binary for a raw HL7 message, ImagingStudy for a DICOM object)."""
    clinical_date: str
    """FHIR date the ledger indexes."""
    category: str | None
    """Coarse category consents can name."""
    locator: str
    """Where the vault keeps it."""
    content_hash: Hash32
    """SHA-256 of the canonical plaintext."""
    ciphertext_hash: Hash32
    """SHA-256 of the stored ciphertext."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    plaintext: bytes
    media_type: str
    resource_type: str
    clinical_date: str
    category: str | None
    kind: str = "record"
    parts: dict[str, bytes] | None = None


def _category(codes: Sequence[str]) -> str | None:
    for code in codes:
        lowered = code.lower()
        if _CATEGORY.match(lowered):
            return lowered
    return None


class VaultIntake:
    """The vault half of ingestion: validate, canonicalise, encrypt and store; return what to register.

    It signs nothing: the registrar signs the returned `records.register` arguments, so the ledger
    shows which member registered each record (locally, or over the REST API).
    """

    def __init__(self, vault: Vault, clock: Callable[[], int]) -> None:
        self.vault = vault
        self.clock = clock

    def _today(self) -> str:
        return datetime.datetime.fromtimestamp(self.clock() / 1000, datetime.UTC).date().isoformat()

    def _from_fhir(self, resource: FhirResource) -> _Prepared:
        summary = clinical_summary(resource)
        return _Prepared(
            plaintext=resource.canonical,
            media_type=FHIR_MEDIA_TYPE,
            resource_type=resource.resource_type,
            clinical_date=summary.clinical_date or self._today(),
            category=_category(summary.category_codes),
        )

    def _store(self, patient: str, item: _Prepared) -> dict[str, Any]:
        stored = self.vault.put(item.plaintext, item.media_type, self.clock(), kind=item.kind)
        return {
            "patient": patient,
            "resource_type": item.resource_type,
            "clinical_date": item.clinical_date,
            "content_hash": stored.content_hash,
            "ciphertext_hash": stored.ciphertext_hash,
            "locator": self.vault.locator_for(stored.object_id),
            "category": item.category,
            "parts": item.parts,
        }

    def fhir(self, patient: str, data: bytes | str) -> list[dict[str, Any]]:
        """A FHIR resource, or every entry of a FHIR Bundle: one registration each."""
        tree = exact_loads(data)
        is_bundle = isinstance(tree, dict) and tree.get("resourceType") == "Bundle"
        resources = parse_bundle(data) if is_bundle else [parse_resource(data)]
        return [self._store(patient, self._from_fhir(r)) for r in resources]

    def hl7(self, patient: str, message: bytes | str) -> list[dict[str, Any]]:
        """An HL7 v2 ADT or ORU message: its FHIR resources, plus the message itself as received."""
        ingest = ingest_hl7(message)
        items = [self._from_fhir(r) for r in ingest.resources]
        dates = sorted(i.clinical_date for i in items if i.resource_type != "Patient")
        raw_date = dates[0] if dates else self._today()
        items.append(_Prepared(ingest.raw, HL7_MEDIA_TYPE, "Binary", raw_date, "hl7v2-source"))
        return [self._store(patient, item) for item in items]

    def dicom(self, patient: str, data: bytes) -> list[dict[str, Any]]:
        """A DICOM object kept whole as a blob; the ledger gets its pixel and header hashes apart."""
        ingest = ingest_dicom(data)
        parts = {"header": ingest.header_hash}
        if ingest.pixel_data_hash is not None:
            parts["pixel_data"] = ingest.pixel_data_hash
        date = ingest.study_date or self._today()
        item = _Prepared(data, DICOM_MEDIA_TYPE, "ImagingStudy", date, "imaging", kind="blob", parts=parts)
        return [self._store(patient, item)]

    def prepare(self, patient: str, kind: str, data: bytes) -> list[dict[str, Any]]:
        """Dispatch on `kind` (fhir, hl7 or dicom)."""
        if kind == "fhir":
            return self.fhir(patient, data)
        if kind == "hl7":
            return self.hl7(patient, data)
        if kind == "dicom":
            return self.dicom(patient, data)
        raise StandardsError(f"unknown record format {kind!r}: use fhir, hl7 or dicom")

    def fhir_amendment(self, previous: str, data: bytes | str, reason: str) -> dict[str, Any]:
        """A corrected FHIR resource, stored anew: the `records.amend` arguments linking it to `previous`."""
        args = self._store("", self._from_fhir(parse_resource(data)))
        return {
            "previous": previous,
            "clinical_date": args["clinical_date"],
            "content_hash": args["content_hash"],
            "ciphertext_hash": args["ciphertext_hash"],
            "locator": args["locator"],
            "reason": reason,
        }


def _ingested(tx_id: bytes, args: dict[str, Any], resource_type: str, category: str | None) -> IngestedRecord:
    return IngestedRecord(
        record_id_for(tx_id),
        tx_id,
        resource_type,
        args["clinical_date"],
        category,
        args["locator"],
        args["content_hash"],
        args["ciphertext_hash"],
    )


class RecordIngestor:
    """A hospital's ingestion desk: its vault intake plus a registrar's ledger client."""

    def __init__(self, vault: Vault, registrar: LedgerClient, clock: Callable[[], int]) -> None:
        self.intake = VaultIntake(vault, clock)
        self.registrar = registrar

    def _register(self, registrations: Sequence[dict[str, Any]]) -> list[IngestedRecord]:
        sent: list[tuple[dict[str, Any], Future[Receipt], bytes]] = []
        for args in registrations:
            tx = self.registrar.prepare("records", "register", args)
            sent.append((args, self.registrar.send(tx), tx.tx_id))
        results = []
        for args, future, tx_id in sent:
            LedgerClient.wait(future)
            results.append(_ingested(tx_id, args, args["resource_type"], args["category"]))
        return results

    def put_fhir(self, patient: str, data: bytes | str) -> list[IngestedRecord]:
        return self._register(self.intake.fhir(patient, data))

    def put_hl7(self, patient: str, message: bytes) -> list[IngestedRecord]:
        return self._register(self.intake.hl7(patient, message))

    def put_dicom(self, patient: str, data: bytes) -> IngestedRecord:
        return self._register(self.intake.dicom(patient, data))[0]

    def amend_fhir(self, previous: str, data: bytes | str, reason: str) -> IngestedRecord:
        """Store a corrected version and register it as the next version of `previous`."""
        args = self.intake.fhir_amendment(previous, data, reason)
        old = self.registrar.query("records", "get", record_id=previous)
        tx = self.registrar.prepare("records", "amend", args)
        LedgerClient.wait(self.registrar.send(tx))
        category = None if old is None else old["category"]
        resource_type = "" if old is None else old["resource_type"]
        return _ingested(tx.tx_id, args, resource_type, category)
