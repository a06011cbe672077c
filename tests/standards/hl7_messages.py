"""HL7 v2 test messages built with hl7apy, the way a sending system would build them.

`adt_message` and `oru_message` return ER7 text (segments separated by CR); tests encode it in the
character set the message declares and derive malformed variants from it by plain text edits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hl7apy.core import Message, Segment

PATIENT_IDS = ("00123^^^GENHOSP&1.2.840.99999.1&ISO^MR", "999-88-7777^^^SSA^SS")
PATIENT_NAMES = ("Ångström^Zoë^^^Dr^^L", "王^小明^^^^^D")


def _header(message: Message, message_type: str, control_id: str, charset: str, sent_at: str) -> None:
    message.msh.msh_3 = "LABSYS"
    message.msh.msh_4 = "GENHOSP"
    message.msh.msh_5 = "MEDLEDGER"
    message.msh.msh_6 = "CONSORTIUM"
    message.msh.msh_7 = sent_at
    message.msh.msh_9 = message_type
    message.msh.msh_10 = control_id
    message.msh.msh_11 = "P"
    if charset:
        message.msh.msh_18 = charset


def _fill_pid(pid: Segment, ids: Sequence[str], names: Sequence[str], birth: str, sex: str) -> None:
    pid.pid_1 = "1"
    for value in ids:
        pid.add_field("pid_3").value = value
    for value in names:
        pid.add_field("pid_5").value = value
    if birth:
        pid.pid_7 = birth
    if sex:
        pid.pid_8 = sex
    pid.add_field("pid_11").value = "1 Main St^Apt 2^Springfield^IL^62701^USA^H"
    pid.add_field("pid_13").value = "^PRN^PH^^1^555^1234567"
    pid.add_field("pid_13").value = "^NET^Internet^zoe@example.org"


def adt_message(
    event: str = "A01",
    *,
    ids: Sequence[str] = PATIENT_IDS,
    names: Sequence[str] = PATIENT_NAMES,
    birth: str = "19800214",
    sex: str = "F",
    charset: str = "UNICODE UTF-8",
    control_id: str = "ADT0001",
    sent_at: str = "20240305101500+0100",
) -> str:
    """An ADT^<event> (A01, A04, A08 all use the ADT_A01 structure) with PID, EVN and PV1."""
    message = Message("ADT_A01", version="2.5")
    _header(message, f"ADT^{event}^ADT_A01", control_id, charset, sent_at)
    message.evn.evn_2 = sent_at
    _fill_pid(message.pid, ids, names, birth, sex)
    message.pv1.pv1_2 = "I"
    return str(message.to_er7())


@dataclass(frozen=True)
class Result:
    """One OBX: value type, code (CWE), value as written, units, reference range, flag, status, time."""

    value_type: str
    code: str
    value: str
    units: str = ""
    reference_range: str = ""
    flag: str = ""
    status: str = "F"
    observed_at: str = ""


DEFAULT_RESULTS = (
    Result("NM", "2345-7^Glucose^LN", "5.40", "mmol/L^mmol/L^UCUM", "3.9-5.6", "N"),
    Result("NM", "718-7^Hemoglobin^LN", "7.50", "g/dL^g/dL^UCUM", "12.0-16.0", "L", observed_at="20240305084500+0100"),
    Result("TX", "8251-1^Service comment^LN", r"Sample \T\ hemolysed \F\ repeat \S\ recheck"),
)


def oru_message(
    results: Sequence[Result] = DEFAULT_RESULTS,
    *,
    charset: str = "UNICODE UTF-8",
    control_id: str = "LAB0001",
    sent_at: str = "20240305101500+0100",
    names: Sequence[str] = PATIENT_NAMES,
    observed_at: str = "20240305083000",
) -> str:
    """An ORU^R01 with one patient, one order (OBR) and the given results (OBX)."""
    message = Message("ORU_R01", version="2.5")
    _header(message, "ORU^R01^ORU_R01", control_id, charset, sent_at)
    patient_result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = patient_result.add_group("ORU_R01_PATIENT")
    _fill_pid(patient.pid, PATIENT_IDS, names, "19800214", "F")
    order = patient_result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_1 = "1"
    order.obr.obr_3 = "FILL-42"
    order.obr.obr_4 = "24323-8^Comprehensive metabolic panel^LN"
    order.obr.obr_7 = observed_at
    order.obr.obr_24 = "CH"
    order.obr.obr_25 = "F"
    for set_id, result in enumerate(results, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(set_id)
        obx.obx_2 = result.value_type
        obx.obx_3 = result.code
        obx.obx_5 = result.value
        if result.units:
            obx.obx_6 = result.units
        if result.reference_range:
            obx.obx_7 = result.reference_range
        if result.flag:
            obx.obx_8 = result.flag
        obx.obx_11 = result.status
        if result.observed_at:
            obx.obx_14 = result.observed_at
    return str(message.to_er7())
