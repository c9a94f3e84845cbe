"""Symptom protocols for the IVR, written by the CareLine project from general clinical knowledge.

No licensed protocol text (e.g. Schmitt-Thompson) is copied. Structure follows the field's practice:
questions ordered most serious first; each question's "yes" carries a disposition (and so an acuity, see
`triage.dispositions`); the first "yes" decides. A question whose "yes" implies acuity 1 is a red flag: the
caller gets emergency advice and a warm transfer, never the queue. If every answer is "no", the protocol's
`default_disposition` applies.

Protocols are code in this first cut; issue 3 moves them to versioned data that clinic admins edit.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.dispositions import get_disposition

PROTOCOL_VERSION = "2026.11.0"


@dataclass(frozen=True)
class Question:
    """A yes/no protocol question. `disposition` is the ladder code a "yes" implies."""

    id: str
    en: str
    es: str
    disposition: str

    @property
    def acuity(self) -> int:
        """CTAS level (1-5) implied by a "yes"."""
        return get_disposition(self.disposition).acuity

    @property
    def red_flag(self) -> bool:
        """A "yes" means an emergency: warm transfer and emergency advice, no queue."""
        return self.acuity == 1

    def text(self, language: str) -> str:
        """The question in `language` ("en" or "es")."""
        return self.es if language == "es" else self.en


@dataclass(frozen=True)
class Protocol:
    """A symptom protocol: `questions` most serious first; `default_disposition` when all are "no"."""

    code: str
    title_en: str
    title_es: str
    questions: tuple[Question, ...]
    default_disposition: str

    def title(self, language: str) -> str:
        """The protocol's title in `language` ("en" or "es")."""
        return self.title_es if language == "es" else self.title_en


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        "chest-pain",
        "chest pain",
        "dolor de pecho",
        (
            Question(
                "cp-collapse",
                "Is the person unconscious, very hard to wake, or struggling to breathe?",
                "¿La persona está inconsciente, muy difícil de despertar o con mucha dificultad para respirar?",
                "call-911",
            ),
            Question(
                "cp-crushing",
                "Is the pain crushing or pressure-like, or does it spread to the arm, jaw or back, "
                "or come with sweating or nausea?",
                "¿El dolor es opresivo, se extiende al brazo, la mandíbula o la espalda, o viene con sudor o náuseas?",
                "call-911",
            ),
            Question(
                "cp-ongoing",
                "Has the pain lasted more than five minutes, or does the person have heart disease?",
                "¿El dolor ha durado más de cinco minutos, o la persona tiene una enfermedad del corazón?",
                "ed-now",
            ),
            Question(
                "cp-breath",
                "Does the pain get worse with breathing or coughing, or is there a fever?",
                "¿El dolor empeora al respirar o toser, o hay fiebre?",
                "ed-ucc-hours",
            ),
        ),
        "clinician-24h",
    ),
    Protocol(
        "breathing",
        "breathing difficulty",
        "dificultad para respirar",
        (
            Question(
                "br-severe",
                "Is the person unable to speak in full sentences, or are the lips or face turning blue or grey?",
                "¿La persona no puede decir frases completas, o tiene los labios o la cara azulados o grises?",
                "call-911",
            ),
            Question(
                "br-sudden",
                "Did the breathing trouble start suddenly, or come with chest pain or a swollen face or tongue?",
                "¿La dificultad empezó de repente, o viene con dolor de pecho o hinchazón de la cara o la lengua?",
                "ed-now",
            ),
            Question(
                "br-inhaler",
                "Is the person wheezing even after using their inhaler?",
                "¿La persona tiene silbidos en el pecho aun después de usar su inhalador?",
                "ed-ucc-hours",
            ),
            Question(
                "br-fever",
                "Is there a fever or a cough with colored phlegm?",
                "¿Hay fiebre o tos con flema de color?",
                "clinician-today",
            ),
        ),
        "clinician-24h",
    ),
    Protocol(
        "child-fever",
        "fever in a child",
        "fiebre en un niño",
        (
            Question(
                "cf-limp",
                "Is the child limp, very hard to wake, having a seizure, or struggling to breathe?",
                "¿El niño está flácido, muy difícil de despertar, con convulsiones o con dificultad para respirar?",
                "call-911",
            ),
            Question(
                "cf-infant",
                "Is the child younger than three months old?",
                "¿El niño tiene menos de tres meses de edad?",
                "ed-now",
            ),
            Question(
                "cf-rash",
                "Does the child have a rash of purple or red spots that do not fade when pressed, or a stiff neck?",
                "¿El niño tiene manchas moradas o rojas que no desaparecen al presionarlas, o rigidez en el cuello?",
                "ed-now",
            ),
            Question(
                "cf-dry",
                "Has the child had no wet diaper or no urine for eight hours or more?",
                "¿El niño lleva ocho horas o más sin mojar el pañal o sin orinar?",
                "ed-ucc-hours",
            ),
            Question(
                "cf-long",
                "Has the fever lasted more than three days, or is it above 104 degrees Fahrenheit?",
                "¿La fiebre ha durado más de tres días, o es mayor de 40 grados centígrados?",
                "clinician-today",
            ),
        ),
        "home-care",
    ),
    Protocol(
        "abdominal-pain",
        "abdominal pain",
        "dolor abdominal",
        (
            Question(
                "ab-shock",
                "Is the person fainting, very pale and sweaty, or vomiting blood?",
                "¿La persona se desmaya, está muy pálida y sudorosa, o vomita sangre?",
                "call-911",
            ),
            Question(
                "ab-severe",
                "Is the pain severe and constant, or could the person be pregnant?",
                "¿El dolor es fuerte y constante, o la persona podría estar embarazada?",
                "ed-now",
            ),
            Question(
                "ab-right",
                "Is the pain in the lower right side, or is there a fever with the pain?",
                "¿El dolor está en la parte baja del lado derecho, o hay fiebre con el dolor?",
                "ed-ucc-hours",
            ),
            Question(
                "ab-vomit",
                "Has the person been vomiting for more than twelve hours or unable to keep fluids down?",
                "¿La persona lleva más de doce horas vomitando o no puede retener líquidos?",
                "clinician-today",
            ),
        ),
        "clinician-3d",
    ),
    Protocol(
        "injury",
        "injury",
        "lesión o golpe",
        (
            Question(
                "in-bleed",
                "Is there heavy bleeding that does not stop with pressure, or did the person lose consciousness?",
                "¿Hay un sangrado abundante que no para al presionar, o la persona perdió el conocimiento?",
                "call-911",
            ),
            Question(
                "in-head",
                "Was there a blow to the head with vomiting or confusion, or does the person take a blood thinner?",
                "¿Hubo un golpe en la cabeza con vómito o confusión, o la persona toma anticoagulantes?",
                "ed-now",
            ),
            Question(
                "in-deform",
                "Is a limb deformed, or can the person not put any weight on it?",
                "¿Alguna extremidad está deformada, o la persona no puede apoyarla?",
                "ed-ucc-hours",
            ),
            Question(
                "in-wound",
                "Is there a cut that gapes open or may need stitches?",
                "¿Hay una herida abierta que podría necesitar puntos?",
                "ed-ucc-hours",
            ),
        ),
        "home-care",
    ),
    Protocol(
        "medication",
        "a medication question",
        "una pregunta sobre medicamentos",
        (
            Question(
                "md-overdose",
                "Did someone take too much of a medicine on purpose or by accident and now feel very unwell?",
                "¿Alguien tomó demasiado de un medicamento, a propósito o por accidente, y ahora se siente muy mal?",
                "call-911",
            ),
            Question(
                "md-reaction",
                "Is there swelling of the face, lips or tongue, or a widespread rash after a new medicine?",
                "¿Hay hinchazón de la cara, labios o lengua, o un sarpullido extenso después de un medicamento nuevo?",
                "ed-now",
            ),
            Question(
                "md-missed",
                "Has the person run out of, or missed doses of, an essential medicine such as insulin?",
                "¿A la persona se le acabó, o dejó de tomar, un medicamento esencial como la insulina?",
                "clinician-today",
            ),
        ),
        "clinician-24h",
    ),
)

BY_CODE: dict[str, Protocol] = {p.code: p for p in PROTOCOLS}


def get_protocol(code: str) -> Protocol:
    """Return the protocol with `code`. Raises KeyError for an unknown code."""
    return BY_CODE[code]


@dataclass(frozen=True)
class TriageResult:
    """Outcome of a protocol: the deciding question (None when all were "no") and its disposition."""

    disposition: str
    acuity: int
    deciding_question: str | None

    @property
    def red_flag(self) -> bool:
        """Acuity 1: emergency advice and warm transfer, never queued."""
        return self.acuity == 1


def evaluate(protocol: Protocol, answers: dict[str, bool]) -> TriageResult | None:
    """Apply the first-"yes"-decides rule to `answers` (question id -> yes).

    Returns the result once it is decided: at the first "yes", or when every question has a "no". Returns
    None while a question before the first "yes" is still unanswered.
    """
    for question in protocol.questions:
        if question.id not in answers:
            return None
        if answers[question.id]:
            return TriageResult(question.disposition, question.acuity, question.id)
    default = get_disposition(protocol.default_disposition)
    return TriageResult(default.code, default.acuity, None)
