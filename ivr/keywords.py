"""What an inbound SMS says, before a nurse reads it: opt-out keywords, reply keywords, emergency words.

Opt-out keywords (whole message, case-insensitive, surrounding spaces and punctuation ignored), after
Twilio's default opt-out handling ("Twilio support for opt-out keywords"; CTIA Messaging Principles and
Best Practices): STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE stop messages; START, YES,
UNSTOP resume them; HELP, INFO answer the help text. Spanish equivalents (CareLine's choice, configured
the same way in Twilio's Advanced Opt-Out): PARAR, DETENER (stop), COMENZAR (start), AYUDA (help).
Twilio itself blocks messages to a number that sent STOP; CareLine keeps its own table too (per clinic),
so the console refuses a reply before Twilio would, and the record survives a change of provider.

Reply keywords: CALL / LLAMAR after a missed call ("reply CALL to be called back"); CONFIRM / CONFIRMAR and
CANCEL APPT / CANCELAR CITA to an appointment reminder. A bare CANCEL is an opt-out keyword for Twilio (it
would stop every message to the number), so reminders ask for "CANCEL APPT", which Twilio leaves alone.
YES is an opt-in keyword (Twilio's); from a number that had not opted out, after a reminder, it confirms.

Emergency and "worse" words: a conservative screen, not triage. Any message that contains one of
`EMERGENCY_TERMS` (symptoms for which public guidance is "call 911": chest pain, trouble breathing, stroke
signs, unresponsiveness, seizure, severe bleeding, anaphylaxis, overdose, suicidal thoughts - after the
American Heart Association's and the CDC's warning-sign lists; wording CareLine's own) raises the case to
acuity 1 and the patient is told to call 911 now. A message saying the patient feels worse
(`WORSE_TERMS`) raises the case to acuity 2 at least and also gets the 911 advice. Negations ("no chest
pain") are deliberately NOT recognised: a false alarm costs a nurse's minute, a missed one can cost a life.
Acuity is only ever raised by a message, never lowered.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

STOP = "stop"
START = "start"
HELP = "help"
CALL = "call"
CONFIRM = "confirm"
CANCEL_APPOINTMENT = "cancel_appointment"

KEYWORDS: dict[str, str] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"), STOP),
    **dict.fromkeys(("PARAR", "DETENER"), STOP),
    **dict.fromkeys(("START", "YES", "UNSTOP", "COMENZAR"), START),
    **dict.fromkeys(("HELP", "INFO", "AYUDA"), HELP),
    **dict.fromkeys(("CALL", "CALL ME", "LLAMAR", "LLAMENME"), CALL),
    **dict.fromkeys(("CONFIRM", "CONFIRMED", "CONFIRMAR", "CONFIRMO"), CONFIRM),
    **dict.fromkeys(("CANCEL APPT", "CANCEL APPOINTMENT", "CANCELAR CITA"), CANCEL_APPOINTMENT),
}
SPANISH_KEYWORDS = frozenset(
    {"PARAR", "DETENER", "COMENZAR", "AYUDA", "LLAMAR", "LLAMENME", "CONFIRMAR", "CONFIRMO", "CANCELAR CITA"}
)

EMERGENCY_TERMS = (
    "chest pain",
    "chest pressure",
    "heart attack",
    "can't breathe",
    "cant breathe",
    "cannot breathe",
    "can not breathe",
    "not breathing",
    "trouble breathing",
    "hard to breathe",
    "short of breath",
    "struggling to breathe",
    "choking",
    "turning blue",
    "blue lips",
    "unconscious",
    "unresponsive",
    "passed out",
    "fainted",
    "seizure",
    "stroke",
    "face drooping",
    "slurred speech",
    "bleeding a lot",
    "heavy bleeding",
    "won't stop bleeding",
    "wont stop bleeding",
    "anaphyla",
    "throat closing",
    "throat is closing",
    "overdose",
    "suicid",
    "kill myself",
    "end my life",
    "want to die",
    # Spanish (accents are stripped before matching)
    "dolor de pecho",
    "dolor en el pecho",
    "no puedo respirar",
    "no respira",
    "me ahogo",
    "inconsciente",
    "desmay",
    "convulsion",
    "derrame",
    "sangrado fuerte",
    "sobredosis",
    "matarme",
    "quitarme la vida",
)
WORSE_TERMS = ("worse", "getting bad", "peor", "empeor")

EMERGENCY_ACUITY = 1
WORSE_ACUITY = 2


@dataclass(frozen=True)
class Screen:
    """The result of screening a message: `acuity` to raise the case to (None: no alarm) and the `rule`
    ("emergency_words" / "worse_words") with the `term` that matched (for tests and debugging only: the
    timeline names the rule, never the symptom words, which are PHI)."""

    acuity: int | None
    rule: str = ""
    term: str = ""


def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = plain.replace("\u2019", "'").lower()
    return re.sub(r"\s+", " ", plain).strip()


def keyword_text(body: str) -> str:
    """The message as keywords are matched: accents, punctuation and extra spaces removed, upper case."""
    return re.sub(r"[^\w ]", "", _normalise(body)).strip().upper()


def keyword(body: str) -> str:
    """The keyword a whole message is ("stop", "start", "help", "call", "confirm", "cancel_appointment"),
    or "" for free text."""
    return KEYWORDS.get(keyword_text(body), "")


def is_spanish_keyword(body: str) -> bool:
    """True when the message is one of the Spanish keywords (the reply is then in Spanish)."""
    return keyword_text(body) in SPANISH_KEYWORDS


def screen(body: str) -> Screen:
    """Screen a free-text message for emergency and "worse" words (see the module docstring)."""
    text = _normalise(body)
    for term in EMERGENCY_TERMS:
        if term in text:
            return Screen(acuity=EMERGENCY_ACUITY, rule="emergency_words", term=term)
    for term in WORSE_TERMS:
        if term in text:
            return Screen(acuity=WORSE_ACUITY, rule="worse_words", term=term)
    return Screen(acuity=None)
