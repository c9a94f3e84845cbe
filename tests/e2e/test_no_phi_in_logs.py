"""Application logs carry no PHI (HIPAA 45 CFR 164.312(b) and the minimum-necessary standard; OWASP ASVS 5.0
V16.2 "no sensitive data in logs").

A patient's distinctive values (the shared synthetic patient Jerry Wiegand: name, family, phone in every
format, MRN, SSN, street, birth date in every format the flow handles) go through a whole flow: the call
through signed Twilio webhooks (identified by phone and birth date on the real FHIR server), the nurse's case
page with the chart, the API claim / accept / disposition with a note naming the patient, the FHIR write-back
to sekmet and the HL7 write-back to an MLLP peer. Every record of every logger is captured at DEBUG (the root
logger and the loggers that do not propagate, such as django.server), and none of the canaries may appear in
any formatted message, its args or its traceback, nor in the line the configured formatters write (the human
`plain` one and the production `json` one, with request_id and node). No browser: not marked e2e, so the
embedded (SQLite) run has it too.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
import traceback
from collections.abc import Iterator

import pytest
from django.test import Client

from ehr.models import WriteBack
from tests.ivr.phone import Phone
from triage.models import Case
from triage.protocol_versions import protocol_library_install

pytestmark = [pytest.mark.django_db, pytest.mark.fhir]

JERRY_PHONE = "+15553031209"
CANARIES = (
    "Jerry",
    "Wiegand",
    "+15553031209",
    "15553031209",
    "5553031209",
    "555-303-1209",
    "(555) 303-1209",
    "555.303.1209",
    "303-1209",
    "6200661",  # MRN
    "999-41-9959",  # SSN
    "Hodkiewicz",  # street
    "1995-02-02",
    "02021995",
    "19950202",
    "02/02/1995",
)


def configured_formatter(name: str) -> logging.Formatter:
    """The formatter `name` of settings.LOGGING, built as dictConfig builds it."""
    from django.conf import settings

    configurator = logging.config.DictConfigurator(copy.deepcopy(settings.LOGGING))
    return configurator.configure_formatter(copy.deepcopy(settings.LOGGING["formatters"][name]))


class Collect(logging.Handler):
    """Keeps every record, and the line each configured formatter (plain, json) writes for it, with the
    console handler's filters (request_id, node) applied."""

    def __init__(self) -> None:
        from careline.middleware import NodeIdLogFilter, RequestIdLogFilter

        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: dict[str, list[str]] = {"plain": [], "json": []}
        self.formatters = {name: configured_formatter(name) for name in self.lines}
        self.addFilter(RequestIdLogFilter())
        self.addFilter(NodeIdLogFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        for name, formatter in self.formatters.items():
            self.lines[name].append(formatter.format(record))


@pytest.fixture
def every_log_record() -> Iterator[Collect]:
    """A handler on the root logger and on every logger that does not propagate, every logger at DEBUG."""
    handler = Collect()
    manager = logging.root.manager
    loggers = [logging.root] + [logger for logger in manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    for name in ("django.request", "django.server", "django.channels.server", "daphne", "celery", "urllib3"):
        loggers.append(logging.getLogger(name))
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is logging.root or not logger.propagate:
            logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            if handler in logger.handlers:
                logger.removeHandler(handler)


def rendered(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), record.name]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def test_a_whole_flow_logs_no_phi(
    personas, fhir, mllp_peer, settings, every_log_record, django_capture_on_commit_callbacks
):
    settings.HL7_MLLP_HOST = mllp_peer.host
    settings.HL7_MLLP_PORT = mllp_peer.port
    settings.HL7_TIMEOUT_SECONDS = 3
    protocol_library_install(clinic=personas.north)
    jerry = fhir.patient("wiegand-jerry")

    # The call: signed webhooks, identified by phone + birth date, abdominal pain -> queued.
    phone = Phone(Client(), from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")  # English
    phone.press("02021995")
    phone.press("1")  # adult
    phone.press("4")  # abdominal pain
    phone.press("2")
    phone.press("2")
    phone.press("1")
    case = Case.objects.get()
    assert case.patient_fhir_id == jerry["server_id"]

    # The nurse: case page with the chart, then claim, accept and disposition through the API.
    nurse = Client()
    nurse.force_login(personas.alice)
    page = nurse.get(f"/console/cases/{case.pk}/")
    assert page.status_code == 200 and "chart-allergies" in page.content.decode()
    assert nurse.post("/api/v1/cases/next/").json()["id"] == case.pk
    assert nurse.post(f"/api/v1/cases/{case.pk}/accept/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        done = nurse.post(
            f"/api/v1/cases/{case.pk}/disposition/",
            {"disposition": "ed-ucc-hours", "note": "Jerry Wiegand (MRN 6200661, 555-303-1209) told to go tonight"},
            "application/json",
        )
    assert done.status_code == 200, done.content
    # ... and the write-backs reached sekmet and the MLLP peer (the flow really ran).
    assert dict(WriteBack.objects.filter(source_id=case.pk).values_list("target", "state")) == {
        "fhir": "sent",
        "hl7v2": "sent",
    }
    assert mllp_peer.messages and "WIEGAND" in mllp_peer.messages[0].upper()

    records = every_log_record.records
    assert records, "nothing was logged: the capture is not working"
    leaks = [
        (record.name, canary, rendered(record)[:300])
        for record in records
        for canary in CANARIES
        if canary.lower() in rendered(record).lower()
    ]
    assert leaks == []
    # The same records as the configured formatters write them: human lines and JSON lines (LOG_FORMAT=json).
    for name, lines in every_log_record.lines.items():
        assert len(lines) == len(records)
        leaks = [(name, canary, line[:300]) for line in lines for canary in CANARIES if canary.lower() in line.lower()]
        assert leaks == []
    objects = [json.loads(line) for line in every_log_record.lines["json"]]
    assert all({"time", "level", "logger", "message", "request_id", "node"} <= set(obj) for obj in objects)
    assert any(obj["request_id"] != "-" for obj in objects), "request ids reach the JSON lines"
