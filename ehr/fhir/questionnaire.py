"""A protocol version as a FHIR R4 `Questionnaire`, built with fhirclient's R4 models.

Takes plain data (ehr does not import triage, DESIGN §3): the caller passes the protocol's code, version,
status, titles and questions. Shape:

- `url` = `urn:careline:protocol:<code>` (canonical), `version` = the version label, `status` = draft |
  active | retired (FHIR PublicationStatus has the same three codes), `title`, `name` (computable name).
- one `item` per question, most serious first: `type` boolean, `linkId` = the question id, `text` = the
  English text; extensions: `DISPOSITION_EXTENSION` (the disposition a "yes" implies, `valueCoding` with
  system `DISPOSITION_SYSTEM`, code = the ladder code, display = its wording), `ACUITY_EXTENSION` (its CTAS
  level, `valueInteger`) and `TEXT_ES_EXTENSION` (the Spanish text, `valueString`).
- the protocol's default disposition (all answers "no") as `DEFAULT_DISPOSITION_EXTENSION`.

The same canonical is what the FHIR write-back puts in `QuestionnaireResponse.questionnaire`
(`<url>|<version>`), so an EHR can join the answers to the questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhirclient.models.coding import Coding
from fhirclient.models.extension import Extension
from fhirclient.models.questionnaire import Questionnaire, QuestionnaireItem

CANONICAL_PREFIX = "urn:careline:protocol:"
DISPOSITION_SYSTEM = "urn:careline:disposition"
DISPOSITION_EXTENSION = "urn:careline:fhir:StructureDefinition/yes-disposition"
DEFAULT_DISPOSITION_EXTENSION = "urn:careline:fhir:StructureDefinition/default-disposition"
ACUITY_EXTENSION = "urn:careline:fhir:StructureDefinition/yes-acuity"
TEXT_ES_EXTENSION = "urn:careline:fhir:StructureDefinition/text-es"
STATUSES = frozenset({"draft", "active", "retired"})


@dataclass(frozen=True)
class QuestionnaireQuestion:
    """One yes/no question: id, texts, the disposition code a "yes" implies, its display and CTAS acuity."""

    id: str
    text_en: str
    text_es: str
    disposition: str
    disposition_display: str
    acuity: int


def canonical_url(code: str) -> str:
    """The Questionnaire canonical of protocol `code`."""
    return f"{CANONICAL_PREFIX}{code}"


def _disposition(url: str, code: str, display: str) -> Extension:
    extension = Extension()
    extension.url = url
    coding = Coding()
    coding.system = DISPOSITION_SYSTEM
    coding.code = code
    coding.display = display or None
    extension.valueCoding = coding
    return extension


def _extension(url: str, **value: Any) -> Extension:
    extension = Extension()
    extension.url = url
    for key, val in value.items():
        setattr(extension, key, val)
    return extension


def questionnaire_json(
    *,
    code: str,
    version: str,
    status: str,
    title: str,
    questions: list[QuestionnaireQuestion],
    default_disposition: str,
    default_disposition_display: str = "",
    publisher: str = "",
    date: str | None = None,
) -> dict[str, Any]:
    """The FHIR R4 Questionnaire JSON (dict) of one protocol version. `status` one of draft/active/retired
    (ValueError otherwise); `date` ISO 8601 (e.g. when the version was activated), optional."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, got {status!r}")
    resource = Questionnaire()
    resource.url = canonical_url(code)
    resource.version = version
    resource.name = re.sub(r"[^A-Za-z0-9]", "", code.title()) or "Protocol"
    resource.title = title
    resource.status = status
    resource.subjectType = ["Patient"]
    if publisher:
        resource.publisher = publisher
    resource.extension = [_disposition(DEFAULT_DISPOSITION_EXTENSION, default_disposition, default_disposition_display)]
    items = []
    for question in questions:
        item = QuestionnaireItem()
        item.linkId = question.id
        item.text = question.text_en
        item.type = "boolean"
        item.required = False
        item.extension = [
            _disposition(DISPOSITION_EXTENSION, question.disposition, question.disposition_display),
            _extension(ACUITY_EXTENSION, valueInteger=question.acuity),
            _extension(TEXT_ES_EXTENSION, valueString=question.text_es),
        ]
        items.append(item)
    resource.item = items
    data: dict[str, Any] = resource.as_json()
    if date:
        data["date"] = date
    return data
