"""EHR-aware risk modifiers: facts from the patient's chart that raise a case's acuity, with the reason.

Pure functions over plain facts (no database, no EHR client): `facts_from_chart` turns chart lines and a
birth date into `RiskFacts`; `evaluate` applies the enabled `RULES` in order and returns one `RiskHit` per
rule that fires, each with the explanation the nurse sees. Rules only ever raise acuity (a lower CTAS
number); lowering is a nurse's decision with a supervisor's co-sign (`triage.services.acuity_override_*`).
A clinic switches rules off with `triage.models.RiskRuleSetting`.

Rules (CTAS level 1 most urgent .. 5), each with its source:

- `anticoagulant-injury`: an anticoagulant on the active medication list + the injury, head-injury or cuts
  protocol -> level 2 at least. Source: NICE NG232 (head injury, 2023) asks for CT imaging within hours
  for people on anticoagulants; the CTAS "bleeding disorder" modifier raises bleeding in anticoagulated
  patients.
- `pregnancy-abdominal`: an active pregnancy on the condition list + the abdominal-pain protocol -> level
  2 at least. Ectopic pregnancy and placental abruption must be excluded urgently (ACOG Practice Bulletin
  193, tubal ectopic pregnancy).
- `immunosuppressed-fever`: an immunosuppressing condition or medicine + a fever protocol -> level 2 at
  least. CTAS fever modifier (fever in an immunocompromised patient is level 2); IDSA febrile-neutropenia
  guideline (Freifeld et al. 2011).
- `infant-fever`: age under 90 days (birth date) + a fever protocol -> level 2 at least. Paediatric CTAS
  (fever in an infant under 3 months is level 2); AAP guideline for febrile infants (2021).
- `age-over-75`: age over 75 (birth date), any protocol -> one level up, never above level 3. Symptom-based
  scales under-triage older patients (Grossmann et al., Ann Emerg Med 2012, ESI in patients 65+).

Chart facts are read by keyword from the chart's text (FHIR `CodeableConcept.text` or display); the
lists below are deliberately broad because a missed modifier costs more than a nurse dismissing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

INJURY_PROTOCOLS = frozenset({"injury", "head-injury", "cuts"})
ABDOMINAL_PROTOCOLS = frozenset({"abdominal-pain"})
FEVER_PROTOCOLS = frozenset({"fever-adult", "child-fever"})

ANTICOAGULANTS = (
    "warfarin",
    "coumadin",
    "jantoven",
    "apixaban",
    "eliquis",
    "rivaroxaban",
    "xarelto",
    "dabigatran",
    "pradaxa",
    "edoxaban",
    "savaysa",
    "enoxaparin",
    "lovenox",
    "dalteparin",
    "heparin",
    "fondaparinux",
)
IMMUNOSUPPRESSING_CONDITIONS = (
    "immunodeficien",
    "immunocompromis",
    "immunosuppress",
    "neutropeni",
    "hiv",
    "human immunodeficiency",
    "transplant",
    "leukemia",
    "leukaemia",
    "lymphoma",
    "myeloma",
    "chemotherapy",
    "asplenia",
)
IMMUNOSUPPRESSING_MEDICINES = (
    "methotrexate",
    "tacrolimus",
    "cyclosporine",
    "ciclosporin",
    "mycophenolate",
    "azathioprine",
    "sirolimus",
    "everolimus",
    "cyclophosphamide",
    "prednisone",
    "prednisolone",
    "infliximab",
    "adalimumab",
    "etanercept",
    "rituximab",
)
# An active pregnancy, not a history of one.
_PREGNANT = re.compile(r"\bpregnan")
_NOT_CURRENT = re.compile(r"\b(history|past|previous|prior|not pregnant|negative|postpartum|post-partum)\b")


def _mentions(texts: list[str], words: tuple[str, ...]) -> bool:
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")", re.IGNORECASE)
    return any(pattern.search(t) for t in texts)


@dataclass(frozen=True)
class RiskFacts:
    """What is known about the patient. `None` means unknown (e.g. the chart was not read)."""

    age_days: int | None = None
    anticoagulated: bool | None = None
    pregnant: bool | None = None
    immunosuppressed: bool | None = None

    @property
    def age_years(self) -> float | None:
        """Age in years (365.25-day years), or None."""
        return None if self.age_days is None else self.age_days / 365.25


def age_facts(*, birth_date: date | None, today: date) -> RiskFacts:
    """Facts known from the birth date alone (at enqueue, before any chart read)."""
    return RiskFacts(age_days=(today - birth_date).days if birth_date else None)


def facts_from_chart(
    *, conditions: list[str], medications: list[str], birth_date: date | None, today: date
) -> RiskFacts:
    """Facts from chart lines: `conditions` (active Condition texts), `medications` (active
    MedicationRequest texts) and the birth date. Matching is by keyword, case-insensitive (module lists)."""
    pregnant = any(_PREGNANT.search(c.lower()) and not _NOT_CURRENT.search(c.lower()) for c in conditions)
    return RiskFacts(
        age_days=(today - birth_date).days if birth_date else None,
        anticoagulated=_mentions(medications, ANTICOAGULANTS),
        pregnant=pregnant,
        immunosuppressed=_mentions(conditions, IMMUNOSUPPRESSING_CONDITIONS)
        or _mentions(medications, IMMUNOSUPPRESSING_MEDICINES),
    )


@dataclass(frozen=True)
class RiskRule:
    """One modifier: fires when `protocols` is empty or holds the case's protocol and `applies(facts)`.

    Effect: `raise_to` (the level becomes at most this number), or one level up but never above
    `ceiling` (`raise_to` None). `explanation` is what the nurse reads; `source` why the rule exists.
    """

    code: str
    title: str
    protocols: frozenset[str]
    applies: Callable[[RiskFacts], bool]
    explanation: str
    source: str
    raise_to: int | None = None
    ceiling: int = 1
    needs_chart: bool = True

    def new_acuity(self, acuity: int) -> int:
        """The acuity after this rule (never less urgent than `acuity`)."""
        if self.raise_to is not None:
            return min(acuity, self.raise_to)
        return acuity - 1 if acuity > self.ceiling else acuity


RULES: tuple[RiskRule, ...] = (
    RiskRule(
        code="anticoagulant-injury",
        title="Anticoagulant and injury or bleeding",
        protocols=INJURY_PROTOCOLS,
        applies=lambda f: f.anticoagulated is True,
        explanation="On an anticoagulant (chart) with an injury or bleeding: bleeding and intracranial "
        "injury risk, assess within 15 minutes.",
        source="NICE NG232 (2023); CTAS bleeding-disorder modifier",
        raise_to=2,
    ),
    RiskRule(
        code="pregnancy-abdominal",
        title="Pregnancy and abdominal pain",
        protocols=ABDOMINAL_PROTOCOLS,
        applies=lambda f: f.pregnant is True,
        explanation="Active pregnancy (chart) with abdominal pain: ectopic pregnancy or abruption must be "
        "excluded urgently.",
        source="ACOG Practice Bulletin 193",
        raise_to=2,
    ),
    RiskRule(
        code="immunosuppressed-fever",
        title="Immunosuppression and fever",
        protocols=FEVER_PROTOCOLS,
        applies=lambda f: f.immunosuppressed is True,
        explanation="Immunosuppressed (chart) with fever: possible neutropenic sepsis.",
        source="CTAS fever modifier; IDSA febrile neutropenia guideline (2011)",
        raise_to=2,
    ),
    RiskRule(
        code="infant-fever",
        title="Infant under 3 months with fever",
        protocols=FEVER_PROTOCOLS,
        applies=lambda f: f.age_days is not None and f.age_days < 90,
        explanation="Infant under 3 months (birth date) with fever: serious bacterial infection risk.",
        source="Paediatric CTAS; AAP febrile infant guideline (2021)",
        raise_to=2,
        needs_chart=False,
    ),
    RiskRule(
        code="age-over-75",
        title="Age over 75",
        protocols=frozenset(),
        applies=lambda f: f.age_years is not None and f.age_years > 75,
        explanation="Over 75 (birth date): older patients are under-triaged by symptom protocols; one "
        "level up (not above level 3).",
        source="Grossmann et al., Ann Emerg Med 2012",
        ceiling=3,
        needs_chart=False,
    ),
)
BY_CODE: dict[str, RiskRule] = {r.code: r for r in RULES}


@dataclass(frozen=True)
class RiskHit:
    """A rule that fired: the acuity before and after it (equal when the case was already as urgent)."""

    rule: str
    title: str
    explanation: str
    source: str
    from_acuity: int
    to_acuity: int

    def as_dict(self) -> dict[str, object]:
        """JSON form stored on `Case.risk_modifiers`."""
        return {
            "rule": self.rule,
            "title": self.title,
            "explanation": self.explanation,
            "source": self.source,
            "from_acuity": self.from_acuity,
            "to_acuity": self.to_acuity,
        }


def evaluate(*, protocol_code: str, acuity: int, facts: RiskFacts, enabled: frozenset[str] | set[str]) -> list[RiskHit]:
    """Apply the rules whose code is in `enabled`, in `RULES` order, to a case at `acuity` (CTAS 1-5) triaged
    with `protocol_code`. Each rule sees the acuity left by the previous ones. Returns the hits in order."""
    hits = []
    for rule in RULES:
        if rule.code not in enabled or (rule.protocols and protocol_code not in rule.protocols):
            continue
        if not rule.applies(facts):
            continue
        new = rule.new_acuity(acuity)
        hits.append(RiskHit(rule.code, rule.title, rule.explanation, rule.source, acuity, new))
        acuity = new
    return hits
