"""What the IVR says, in English and Spanish (Mexico), and the SMS confirmation text.

Wording is CareLine's own. Before the caller's birth date is confirmed nothing here names or describes a
patient (no PHI is spoken to an unverified caller). `<Say language>` uses `SAY_LANGUAGE`.
"""

from __future__ import annotations

import phonenumbers

from triage.protocols import Protocol, Question

LANGUAGES = ("en", "es")
SAY_LANGUAGE = {"en": "en-US", "es": "es-MX"}

_TEXT: dict[str, dict[str, str]] = {
    "disclaimer": {
        "en": "Thank you for calling the {clinic} after-hours nurse line. "
        "If this is a life-threatening emergency, hang up and dial 911.",
        "es": "Si es una emergencia que pone en peligro la vida, cuelgue y marque el 911.",
    },
    "language_menu": {"en": "For English, press 1.", "es": "Para español, oprima 2."},
    "dob": {
        "en": "To find your record, enter the patient's date of birth as eight digits: two for the month, "
        "two for the day, and four for the year. For example, March fifth, 1980 is 0 3 0 5 1 9 8 0. "
        "To speak with a nurse, press 0 and then the pound key.",
        "es": "Para encontrar su expediente, marque la fecha de nacimiento del paciente con ocho dígitos: "
        "dos para el mes, dos para el día y cuatro para el año. Por ejemplo, el 5 de marzo de 1980 es "
        "0 3 0 5 1 9 8 0. Para hablar con una enfermera, oprima 0 y luego la tecla de número.",
    },
    "dob_mismatch": {
        "en": "That date of birth does not match our records. Please try again.",
        "es": "Esa fecha de nacimiento no coincide con nuestros registros. Por favor, inténtelo de nuevo.",
    },
    "dob_not_confirmed": {
        "en": "We could not confirm the record. A nurse will review your call.",
        "es": "No pudimos confirmar el expediente. Una enfermera revisará su llamada.",
    },
    "identified": {"en": "Thank you. We found the record.", "es": "Gracias. Encontramos el expediente."},
    "dob_noted": {"en": "Thank you.", "es": "Gracias."},
    "protocol_intro": {
        "en": "Please choose what best describes the problem.",
        "es": "Por favor, elija lo que mejor describe el problema.",
    },
    "protocol_option": {"en": "For {title}, press {digit}.", "es": "Para {title}, oprima {digit}."},
    "audience_menu": {
        "en": "If the call is about an adult, press 1. If it is about a child, press 2.",
        "es": "Si la llamada es sobre un adulto, oprima 1. Si es sobre un niño, oprima 2.",
    },
    "more_option": {"en": "For more choices, press 9.", "es": "Para más opciones, oprima 9."},
    "first_page_option": {
        "en": "To hear the first choices again, press 9.",
        "es": "Para escuchar otra vez las primeras opciones, oprima 9.",
    },
    "nurse_option": {"en": "To speak with a nurse, press 0.", "es": "Para hablar con una enfermera, oprima 0."},
    "yes_no": {"en": "Press 1 for yes, or 2 for no.", "es": "Oprima 1 para sí, o 2 para no."},
    "invalid": {"en": "Sorry, I did not get that.", "es": "Lo siento, no le entendí."},
    "red_flag": {
        "en": "Your answers show this may be an emergency. If the person is in danger right now, hang up and "
        "dial 911. We are connecting you to the on-call clinician now. Please stay on the line.",
        "es": "Sus respuestas indican que puede ser una emergencia. Si la persona está en peligro ahora, "
        "cuelgue y marque el 911. Le estamos comunicando con el médico de guardia. No cuelgue.",
    },
    "transfer_ended": {
        "en": "If you still need help, hang up and dial 911. Goodbye.",
        "es": "Si todavía necesita ayuda, cuelgue y marque el 911. Adiós.",
    },
    "enqueued": {
        "en": "Thank you. Your call is now in line for a nurse.",
        "es": "Gracias. Su llamada está en la fila para una enfermera.",
    },
    "to_nurse": {
        "en": "A nurse will assess your call. Your call is now in line.",
        "es": "Una enfermera evaluará su llamada. Su llamada está en la fila.",
    },
    "contact_menu": {
        "en": "To hold for the next available nurse, press 1. To get a call back and keep your place in line, press 2.",
        "es": "Para esperar en la línea a la próxima enfermera disponible, oprima 1. "
        "Para recibir una llamada y conservar su lugar en la fila, oprima 2.",
    },
    "hold": {"en": "Please stay on the line.", "es": "Por favor, no cuelgue."},
    "callback": {
        "en": "A nurse will call you back at the number you are calling from, and you keep your place in line. "
        "Please keep your phone nearby. If the condition gets worse, dial 911. Goodbye.",
        "es": "Una enfermera le devolverá la llamada al número desde el que llama, y conserva su lugar en la "
        "fila. Tenga su teléfono cerca. Si la condición empeora, marque el 911. Adiós.",
    },
    "position": {"en": "You are number {position} in line.", "es": "Usted es el número {position} en la fila."},
    "wait_advice": {
        "en": "A nurse will be with you as soon as possible. If the condition gets worse, hang up and dial 911.",
        "es": "Una enfermera le atenderá lo antes posible. Si la condición empeora, cuelgue y marque el 911.",
    },
    "nurse_reviewing": {
        "en": "A nurse is reviewing your call now. Please stay on the line.",
        "es": "Una enfermera está revisando su llamada ahora. Por favor, no cuelgue.",
    },
    "call_closed": {
        "en": "Your call has been completed by a nurse. Goodbye.",
        "es": "Una enfermera completó su llamada. Adiós.",
    },
    "worse_option": {
        "en": "If the symptoms are getting worse, press 9.",
        "es": "Si los síntomas empeoran, oprima 9.",
    },
    "retriage_intro": {
        "en": "Please answer a few questions again.",
        "es": "Por favor, conteste de nuevo algunas preguntas.",
    },
    "retriage_unchanged": {
        "en": "Thank you. A nurse has your answers. You keep your place in line.",
        "es": "Gracias. Una enfermera tiene sus respuestas. Usted conserva su lugar en la fila.",
    },
    "retriage_raised": {
        "en": "Thank you. Your call has been moved up for a nurse. Please stay on the line.",
        "es": "Gracias. Su llamada ha sido adelantada para una enfermera. Por favor, no cuelgue.",
    },
    "retriage_none": {
        "en": "A nurse will be with you as soon as possible. If this is an emergency, hang up and dial 911.",
        "es": "Una enfermera le atenderá lo antes posible. Si es una emergencia, cuelgue y marque el 911.",
    },
    "sms_callback_unreached": {
        "en": "{clinic}: A nurse tried to call you back and could not reach you. Please call us at {number}. "
        "If the condition gets worse, call 911.",
        "es": "{clinic}: Una enfermera intentó devolverle la llamada y no pudo comunicarse. Llámenos al {number}. "
        "Si la condición empeora, llame al 911.",
    },
    "sms_missed_call": {
        "en": "{clinic}: Your nurse tried to call you and could not reach you. Reply CALL to be called back, "
        "or call us at {number}. If the condition gets worse, call 911.",
        "es": "{clinic}: Su enfermera intentó llamarle y no pudo comunicarse. Responda LLAMAR para que le "
        "devolvamos la llamada, o llámenos al {number}. Si la condición empeora, llame al 911.",
    },
    "sms_received_new": {
        "en": "{clinic}: We received your message; a nurse will reply. Do not use text messages for "
        "emergencies: if this is an emergency, call 911. Reply STOP to stop messages, HELP for help.",
        "es": "{clinic}: Recibimos su mensaje; una enfermera le responderá. No use mensajes de texto para "
        "emergencias: si es una emergencia, llame al 911. Responda PARAR para no recibir mensajes, AYUDA "
        "para ayuda.",
    },
    "sms_emergency": {
        "en": "{clinic}: What you describe may be an emergency. Call 911 now. A nurse has been alerted.",
        "es": "{clinic}: Lo que describe puede ser una emergencia. Llame al 911 ahora. Se avisó a una enfermera.",
    },
    "sms_call_requested": {
        "en": "{clinic}: Thank you. A nurse will call you back. If the condition gets worse, call 911.",
        "es": "{clinic}: Gracias. Una enfermera le devolverá la llamada. Si la condición empeora, llame al 911.",
    },
    "sms_stop": {
        "en": "{clinic}: You will receive no more text messages from us. Reply START to receive them again. "
        "For a nurse, call {number}; for emergencies, 911.",
        "es": "{clinic}: No recibirá más mensajes de texto. Responda COMENZAR para recibirlos de nuevo. "
        "Para una enfermera, llame al {number}; para emergencias, al 911.",
    },
    "sms_start": {
        "en": "{clinic}: You will receive text messages from us again. Reply STOP to stop, HELP for help.",
        "es": "{clinic}: Volverá a recibir nuestros mensajes de texto. Responda PARAR para no recibirlos.",
    },
    "sms_help": {
        "en": "{clinic} after-hours nurse line: text us or call {number}. For emergencies call 911. "
        "Reply STOP to stop messages. Msg & data rates may apply.",
        "es": "Línea de enfermería de {clinic}: escríbanos o llame al {number}. Para emergencias, llame al 911. "
        "Responda PARAR para no recibir mensajes.",
    },
    "call_connecting": {
        "en": "CareLine: connecting you to the patient of case {case_id}.",
        "es": "CareLine: conectándole con el paciente del caso {case_id}.",
    },
    "call_patient_unreached": {
        "en": "The patient did not answer. A text message with a callback option was sent.",
        "es": "El paciente no contestó. Se envió un mensaje de texto con la opción de devolver la llamada.",
    },
    "call_patient_unreached_no_sms": {
        "en": "The patient did not answer. No text message could be sent.",
        "es": "El paciente no contestó. No se pudo enviar un mensaje de texto.",
    },
    "sms_reminder": {
        "en": "{clinic}: Reminder of your appointment on {when}. Reply CONFIRM to confirm, or CANCEL APPT to "
        "cancel. If you feel worse, reply WORSE. Reply STOP to stop messages.",
        "es": "{clinic}: Recordatorio de su cita el {when}. Responda CONFIRMAR para confirmar, o CANCELAR CITA "
        "para cancelar. Si se siente peor, responda PEOR. Responda PARAR para no recibir mensajes.",
    },
    "sms_reminder_confirmed": {
        "en": "{clinic}: Thank you, your appointment on {when} is confirmed.",
        "es": "{clinic}: Gracias, su cita del {when} está confirmada.",
    },
    "sms_reminder_cancel": {
        "en": "{clinic}: We received your request to cancel your appointment on {when}; the clinic will "
        "confirm. To talk to a nurse, call {number}.",
        "es": "{clinic}: Recibimos su solicitud para cancelar su cita del {when}; la clínica lo confirmará. "
        "Para hablar con una enfermera, llame al {number}.",
    },
    "sms_confirmation": {
        "en": "{clinic}: We received your call; a nurse will call you back at {number}. "
        "If the condition gets worse, call 911.",
        "es": "{clinic}: Recibimos su llamada; una enfermera le devolverá la llamada al {number}. "
        "Si la condición empeora, llame al 911.",
    },
}


# Pages to staff (English; no patient details: case numbers only).
PAGE_PAST_TARGET = (
    "CareLine {clinic}: case {case_id} (acuity {acuity}) is past its target wait. Please check the console."
)
PAGE_CALLBACK_UNREACHED = (
    "CareLine {clinic}: case {case_id} (acuity {acuity}): patient not reached after {attempts} callback attempt(s). "
    "Please follow up."
)
PAGE_SURGE = (
    "CareLine {clinic}: queue surge, estimated wait for acuity {acuity} and above is {minutes} min. "
    "Please sign in if you can help."
)


def text(key: str, language: str, **values: object) -> str:
    """The prompt `key` in `language` ("en" or "es"; anything else falls back to English), formatted."""
    variants = _TEXT[key]
    return variants.get(language, variants["en"]).format(**values)


# The paged protocol menu: 8 topics per page on digits 1-8, 9 = next page (wrapping), 0 = a nurse.
PAGE_SIZE = 8
MORE_DIGIT = "9"
AUDIENCE_DIGITS = {"1": "adult", "2": "pediatric"}


def menu_protocols(protocols: tuple[Protocol, ...], audience: str) -> tuple[Protocol, ...]:
    """The protocols offered to a caller about an `audience` ("adult" or "pediatric"), in menu order."""
    return tuple(p for p in protocols if p.for_audience(audience))


def page_count(choices: tuple[Protocol, ...]) -> int:
    """How many menu pages `choices` fill (at least 1)."""
    return max(1, -(-len(choices) // PAGE_SIZE))


def audience_menu(language: str) -> list[str]:
    """The first menu of the protocol step: adult or child, then the nurse option."""
    return [text("audience_menu", language), text("nurse_option", language)]


def protocol_menu(choices: tuple[Protocol, ...], page: int, language: str) -> list[str]:
    """One page of the protocol menu as sentences: intro, one per protocol (digits 1..8), "9 for more" (or
    "9 for the first choices" on the last page, when there is more than one page), nurse."""
    shown = choices[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    options = [
        text("protocol_option", language, title=protocol.title(language), digit=digit)
        for digit, protocol in enumerate(shown, start=1)
    ]
    sentences = [text("protocol_intro", language), *options]
    pages = page_count(choices)
    if pages > 1:
        sentences.append(text("more_option" if page + 1 < pages else "first_page_option", language))
    return [*sentences, text("nurse_option", language)]


def question_prompt(question: Question, language: str) -> str:
    """A protocol question followed by the yes/no keys."""
    return f"{question.text(language)} {text('yes_no', language)}"


def protocol_by_digit(choices: tuple[Protocol, ...], page: int, digits: str) -> Protocol | None:
    """The protocol chosen with one keypad digit "1".."8" on menu `page`, or None."""
    shown = choices[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    if len(digits) == 1 and digits.isdigit() and 1 <= int(digits) <= len(shown):
        return shown[int(digits) - 1]
    return None


def spoken_number(number: str) -> str:
    """A callback number for an SMS in national format, e.g. "(555) 303-1209"; unparsable input as given."""
    try:
        parsed = phonenumbers.parse(number, "US")
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
