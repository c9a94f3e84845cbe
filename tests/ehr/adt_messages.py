"""ADT messages for the inbound-feed tests (fictional patients; `CANARY` is a name that must never reach logs)."""

from __future__ import annotations

CANARY = "Zzcanaryname"


def adt(
    trigger: str,
    control_id: str,
    *,
    mrn: str = "MRN-1001",
    family: str = CANARY,
    given: str = "Betty",
    birth: str = "19800214",
    phone: str = "555-146-1616",
    fhir_id: str = "",
    mrg: str | None = None,
    version: str = "2.5",
    app: str = "ADTAPP",
    facility: str = "HOSP",
) -> str:
    """An ADT^<trigger> (ER7, `\\r` separators); PID-3 holds the MRN (MR) and the FHIR id (authority FHIR)."""
    ids = f"{mrn}^^^HOSP^MR" + (f"~{fhir_id}^^^FHIR^PI" if fhir_id else "")
    segments = [
        f"MSH|^~\\&|{app}|{facility}|CARELINE|north|20261121030000||ADT^{trigger}^ADT_A01|{control_id}|P|{version}",
        f"EVN|{trigger}|20261121030000",
        f"PID|1||{ids}||{family}^{given}||{birth}|F|||||^PRN^PH^^1^555^1461616~{phone}",
    ]
    if mrg is not None:
        segments.append(f"MRG|{mrg}^^^HOSP^MR")
    return "\r".join(segments) + "\r"
