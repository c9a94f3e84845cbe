"""CareLine's protocol library: 25 adult and pediatric after-hours topics, seeded into every clinic.

Written by the CareLine project from general clinical knowledge (common red flags taught in nursing and
emergency-medicine curricula); no licensed protocol text (e.g. Schmitt-Thompson) is copied. Structure follows
the field's practice: questions most serious first, each "yes" tagged with a disposition code of the default
ladder (`triage.dispositions`), the first "yes" decides, and `default` applies when every answer is "no".
Clinics edit their copies as new versions (`triage.protocol_versions`); this module is only the seed.

Each entry: (code, audience, menu position, title_en, title_es, default disposition, questions) with
questions as (id, disposition, text_en, text_es). The first six codes and their question ids are those of
the first cut and must not change (cases and tests refer to them).
"""

from __future__ import annotations

LIBRARY_VERSION = "2026.11.0"
LIBRARY_SOURCE = f"CareLine library {LIBRARY_VERSION}"

Q = tuple[str, str, str, str]
Entry = tuple[str, str, int, str, str, str, tuple[Q, ...]]

LIBRARY: tuple[Entry, ...] = (
    (
        "chest-pain",
        "adult",
        10,
        "chest pain",
        "dolor de pecho",
        "clinician-24h",
        (
            (
                "cp-collapse",
                "call-911",
                "Is the person unconscious, very hard to wake, or struggling to breathe?",
                "¿La persona está inconsciente, muy difícil de despertar o con mucha dificultad para respirar?",
            ),
            (
                "cp-crushing",
                "call-911",
                "Is the pain crushing or pressure-like, or does it spread to the arm, jaw or back, "
                "or come with sweating or nausea?",
                "¿El dolor es opresivo, se extiende al brazo, la mandíbula o la espalda, o viene con sudor o náuseas?",
            ),
            (
                "cp-ongoing",
                "ed-now",
                "Has the pain lasted more than five minutes, or does the person have heart disease?",
                "¿El dolor ha durado más de cinco minutos, o la persona tiene una enfermedad del corazón?",
            ),
            (
                "cp-breath",
                "ed-ucc-hours",
                "Does the pain get worse with breathing or coughing, or is there a fever?",
                "¿El dolor empeora al respirar o toser, o hay fiebre?",
            ),
        ),
    ),
    (
        "breathing",
        "all",
        20,
        "breathing difficulty",
        "dificultad para respirar",
        "clinician-24h",
        (
            (
                "br-severe",
                "call-911",
                "Is the person unable to speak in full sentences, or are the lips or face turning blue or grey?",
                "¿La persona no puede decir frases completas, o tiene los labios o la cara azulados o grises?",
            ),
            (
                "br-sudden",
                "ed-now",
                "Did the breathing trouble start suddenly, or come with chest pain or a swollen face or tongue?",
                "¿La dificultad empezó de repente, o viene con dolor de pecho o hinchazón de la cara o la lengua?",
            ),
            (
                "br-inhaler",
                "ed-ucc-hours",
                "Is the person wheezing even after using their inhaler?",
                "¿La persona tiene silbidos en el pecho aun después de usar su inhalador?",
            ),
            (
                "br-fever",
                "clinician-today",
                "Is there a fever or a cough with colored phlegm?",
                "¿Hay fiebre o tos con flema de color?",
            ),
        ),
    ),
    (
        "child-fever",
        "pediatric",
        10,
        "fever in a child",
        "fiebre en un niño",
        "home-care",
        (
            (
                "cf-limp",
                "call-911",
                "Is the child limp, very hard to wake, having a seizure, or struggling to breathe?",
                "¿El niño está flácido, muy difícil de despertar, con convulsiones o con dificultad para respirar?",
            ),
            (
                "cf-infant",
                "ed-now",
                "Is the child younger than three months old?",
                "¿El niño tiene menos de tres meses de edad?",
            ),
            (
                "cf-rash",
                "ed-now",
                "Does the child have a rash of purple or red spots that do not fade when pressed, or a stiff neck?",
                "¿El niño tiene manchas moradas o rojas que no desaparecen al presionarlas, o rigidez en el cuello?",
            ),
            (
                "cf-dry",
                "ed-ucc-hours",
                "Has the child had no wet diaper or no urine for eight hours or more?",
                "¿El niño lleva ocho horas o más sin mojar el pañal o sin orinar?",
            ),
            (
                "cf-long",
                "clinician-today",
                "Has the fever lasted more than three days, or is it above 104 degrees Fahrenheit?",
                "¿La fiebre ha durado más de tres días, o es mayor de 40 grados centígrados?",
            ),
        ),
    ),
    (
        "abdominal-pain",
        "adult",
        30,
        "abdominal pain",
        "dolor abdominal",
        "clinician-3d",
        (
            (
                "ab-shock",
                "call-911",
                "Is the person fainting, very pale and sweaty, or vomiting blood?",
                "¿La persona se desmaya, está muy pálida y sudorosa, o vomita sangre?",
            ),
            (
                "ab-severe",
                "ed-now",
                "Is the pain severe and constant, or could the person be pregnant?",
                "¿El dolor es fuerte y constante, o la persona podría estar embarazada?",
            ),
            (
                "ab-right",
                "ed-ucc-hours",
                "Is the pain in the lower right side, or is there a fever with the pain?",
                "¿El dolor está en la parte baja del lado derecho, o hay fiebre con el dolor?",
            ),
            (
                "ab-vomit",
                "clinician-today",
                "Has the person been vomiting for more than twelve hours or unable to keep fluids down?",
                "¿La persona lleva más de doce horas vomitando o no puede retener líquidos?",
            ),
        ),
    ),
    (
        "injury",
        "all",
        40,
        "injury",
        "lesión o golpe",
        "home-care",
        (
            (
                "in-bleed",
                "call-911",
                "Is there heavy bleeding that does not stop with pressure, or did the person lose consciousness?",
                "¿Hay un sangrado abundante que no para al presionar, o la persona perdió el conocimiento?",
            ),
            (
                "in-head",
                "ed-now",
                "Was there a blow to the head with vomiting or confusion, or does the person take a blood thinner?",
                "¿Hubo un golpe en la cabeza con vómito o confusión, o la persona toma anticoagulantes?",
            ),
            (
                "in-deform",
                "ed-ucc-hours",
                "Is a limb deformed, or can the person not put any weight on it?",
                "¿Alguna extremidad está deformada, o la persona no puede apoyarla?",
            ),
            (
                "in-wound",
                "ed-ucc-hours",
                "Is there a cut that gapes open or may need stitches?",
                "¿Hay una herida abierta que podría necesitar puntos?",
            ),
        ),
    ),
    (
        "medication",
        "all",
        90,
        "a medication question",
        "una pregunta sobre medicamentos",
        "clinician-24h",
        (
            (
                "md-overdose",
                "call-911",
                "Did someone take too much of a medicine on purpose or by accident and now feel very unwell?",
                "¿Alguien tomó demasiado de un medicamento, a propósito o por accidente, y ahora se siente muy mal?",
            ),
            (
                "md-reaction",
                "ed-now",
                "Is there swelling of the face, lips or tongue, or a widespread rash after a new medicine?",
                "¿Hay hinchazón de la cara, labios o lengua, o un sarpullido extenso después de un medicamento nuevo?",
            ),
            (
                "md-missed",
                "clinician-today",
                "Has the person run out of, or missed doses of, an essential medicine such as insulin?",
                "¿A la persona se le acabó, o dejó de tomar, un medicamento esencial como la insulina?",
            ),
        ),
    ),
    (
        "fever-adult",
        "adult",
        50,
        "fever in an adult",
        "fiebre en un adulto",
        "home-care",
        (
            (
                "fa-confused",
                "call-911",
                "Is the person confused, very hard to wake, or struggling to breathe?",
                "¿La persona está confundida, muy difícil de despertar o con dificultad para respirar?",
            ),
            (
                "fa-neck",
                "ed-now",
                "Is there a stiff neck, a rash of spots that do not fade when pressed, or a very bad headache?",
                "¿Hay rigidez de cuello, manchas que no desaparecen al presionarlas o un dolor de cabeza muy fuerte?",
            ),
            (
                "fa-immune",
                "ed-now",
                "Is the person on chemotherapy, on transplant medicines, or told their immune system is weak?",
                "¿La persona recibe quimioterapia, medicinas de trasplante,"
                " o le han dicho que sus defensas están bajas?",
            ),
            (
                "fa-high",
                "clinician-today",
                "Is the fever above 103 degrees Fahrenheit, or has it lasted more than three days?",
                "¿La fiebre es mayor de 39.5 grados centígrados, o ha durado más de tres días?",
            ),
        ),
    ),
    (
        "headache",
        "adult",
        60,
        "headache",
        "dolor de cabeza",
        "home-care",
        (
            (
                "ha-stroke",
                "call-911",
                "Is there new weakness or numbness of the face, arm or leg, trouble speaking, or confusion?",
                "¿Hay debilidad o adormecimiento nuevo de la cara, brazo o pierna, dificultad para hablar o confusión?",
            ),
            (
                "ha-thunder",
                "ed-now",
                "Did the worst headache of the person's life start suddenly, within a minute?",
                "¿Empezó de golpe, en menos de un minuto, el peor dolor de cabeza de su vida?",
            ),
            (
                "ha-fever",
                "ed-now",
                "Is there a fever with a stiff neck, or did the headache follow a blow to the head?",
                "¿Hay fiebre con rigidez de cuello, o el dolor empezó después de un golpe en la cabeza?",
            ),
            (
                "ha-vision",
                "ed-ucc-hours",
                "Is there a change in vision, or is the person pregnant or recently gave birth?",
                "¿Hay un cambio en la vista, o la persona está embarazada o dio a luz hace poco?",
            ),
            (
                "ha-new",
                "clinician-24h",
                "Is this a new kind of headache for a person over fifty, or getting worse every day?",
                "¿Es un tipo de dolor nuevo en una persona mayor de cincuenta años, o empeora cada día?",
            ),
        ),
    ),
    (
        "mental-health",
        "all",
        70,
        "a mental health crisis",
        "una crisis de salud mental",
        "clinician-24h",
        (
            (
                "mh-danger",
                "call-911",
                "Has the person hurt themselves or someone else, or do they have a weapon or a plan to do so now?",
                "¿La persona se ha hecho daño o ha hecho daño a alguien, o tiene un arma o un plan para hacerlo ahora?",
            ),
            (
                "mh-suicidal",
                "ed-now",
                "Is the person thinking about suicide or about hurting someone?",
                "¿La persona está pensando en suicidarse o en hacerle daño a alguien?",
            ),
            (
                "mh-psychosis",
                "ed-ucc-hours",
                "Is the person seeing or hearing things others do not, or unable to care for themselves?",
                "¿La persona ve u oye cosas que otros no, o no puede cuidarse a sí misma?",
            ),
            (
                "mh-sleep",
                "clinician-today",
                "Has the person not slept for two nights, or stopped a psychiatric medicine?",
                "¿La persona lleva dos noches sin dormir, o dejó un medicamento psiquiátrico?",
            ),
        ),
    ),
    (
        "head-injury",
        "all",
        45,
        "a head injury",
        "un golpe en la cabeza",
        "home-care",
        (
            (
                "hi-unconscious",
                "call-911",
                "Is the person unconscious, having a seizure, or not making sense?",
                "¿La persona está inconsciente, con convulsiones, o no dice cosas con sentido?",
            ),
            (
                "hi-vomit",
                "ed-now",
                "Has the person vomited more than once, or are they getting sleepier or more confused?",
                "¿La persona ha vomitado más de una vez, o está cada vez más dormida o confundida?",
            ),
            (
                "hi-thinner",
                "ed-now",
                "Does the person take a blood thinner, or was the person knocked out even briefly?",
                "¿La persona toma anticoagulantes, o perdió el conocimiento aunque sea por un momento?",
            ),
            (
                "hi-headache",
                "ed-ucc-hours",
                "Is there a headache that keeps getting worse, or clear fluid from the nose or ears?",
                "¿Hay un dolor de cabeza que empeora, o sale líquido claro de la nariz o los oídos?",
            ),
        ),
    ),
    (
        "burns",
        "all",
        80,
        "a burn",
        "una quemadura",
        "home-care",
        (
            (
                "bu-airway",
                "call-911",
                "Was there smoke in a closed space,"
                " or are there burns around the mouth or nose with trouble breathing?",
                "¿Hubo humo en un lugar cerrado, o hay quemaduras en la boca o la nariz con dificultad para respirar?",
            ),
            (
                "bu-large",
                "ed-now",
                "Is the burn larger than the person's hand, or from electricity or a chemical?",
                "¿La quemadura es más grande que la mano de la persona, o fue por electricidad o un químico?",
            ),
            (
                "bu-site",
                "ed-ucc-hours",
                "Is the burn on the face, hands, feet or genitals, or is the skin white, leathery or blistered?",
                "¿La quemadura está en la cara, manos, pies o genitales, o la piel está blanca, dura o con ampollas?",
            ),
            (
                "bu-infect",
                "clinician-today",
                "Is the burn getting redder, more painful, or draining pus?",
                "¿La quemadura está más roja, más dolorosa, o sale pus?",
            ),
        ),
    ),
    (
        "cuts",
        "all",
        85,
        "a cut or wound",
        "una cortada o herida",
        "home-care",
        (
            (
                "cu-spurting",
                "call-911",
                "Is blood spurting, or soaking through cloths despite firm pressure?",
                "¿La sangre sale a chorros, o empapa los paños aun con presión firme?",
            ),
            (
                "cu-deep",
                "ed-ucc-hours",
                "Is the cut deep or gaping, or is there numbness or trouble moving a finger or toe?",
                "¿La cortada es profunda o abierta, o hay adormecimiento o dificultad para mover un dedo?",
            ),
            (
                "cu-dirty",
                "clinician-today",
                "Was the wound made by something dirty or rusty, or a bite,"
                " and is the tetanus shot over five years old?",
                "¿La herida fue con algo sucio u oxidado, o una mordida,"
                " y la vacuna del tétanos tiene más de cinco años?",
            ),
            (
                "cu-infect",
                "clinician-today",
                "Is the wound red, swollen, warm, or draining pus?",
                "¿La herida está roja, hinchada, caliente, o sale pus?",
            ),
        ),
    ),
    (
        "allergic-reaction",
        "all",
        25,
        "an allergic reaction or rash",
        "una reacción alérgica o sarpullido",
        "home-care",
        (
            (
                "al-anaphylaxis",
                "call-911",
                "Is there trouble breathing or swallowing, swelling of the tongue or throat, or fainting?",
                "¿Hay dificultad para respirar o tragar, hinchazón de la lengua o la garganta, o desmayo?",
            ),
            (
                "al-face",
                "ed-now",
                "Is the face or lips swelling, or is there widespread hives after a sting, food or medicine?",
                "¿Se hinchan la cara o los labios, o hay ronchas por todo el cuerpo tras una picadura,"
                " comida o medicina?",
            ),
            (
                "al-purple",
                "ed-now",
                "Is there a rash of purple spots that do not fade when pressed, with a fever?",
                "¿Hay manchas moradas que no desaparecen al presionarlas, con fiebre?",
            ),
            (
                "al-blister",
                "ed-ucc-hours",
                "Is the skin blistering or peeling, or are the eyes or mouth sore?",
                "¿La piel tiene ampollas o se pela, o duelen los ojos o la boca?",
            ),
        ),
    ),
    (
        "urinary",
        "adult",
        110,
        "urinary symptoms",
        "molestias al orinar",
        "clinician-24h",
        (
            (
                "ur-septic",
                "ed-now",
                "Is there shaking chills, confusion, or feeling faint with the urinary symptoms?",
                "¿Hay escalofríos fuertes, confusión o sensación de desmayo con las molestias al orinar?",
            ),
            (
                "ur-retention",
                "ed-ucc-hours",
                "Is the person unable to pass urine at all, or is there fever with pain in the side or back?",
                "¿La persona no puede orinar nada, o hay fiebre con dolor en el costado o la espalda?",
            ),
            (
                "ur-blood",
                "clinician-today",
                "Is there blood in the urine, or is the person pregnant?",
                "¿Hay sangre en la orina, o la persona está embarazada?",
            ),
        ),
    ),
    (
        "back-pain",
        "adult",
        120,
        "back pain",
        "dolor de espalda",
        "clinician-2w",
        (
            (
                "bp-aorta",
                "call-911",
                "Is there sudden tearing pain in the back or belly, or fainting?",
                "¿Hay un dolor repentino, como desgarro, en la espalda o el abdomen, o desmayo?",
            ),
            (
                "bp-cauda",
                "ed-now",
                "Is there new numbness between the legs, loss of bladder or bowel control, or leg weakness?",
                "¿Hay adormecimiento nuevo entre las piernas, pérdida del control de la orina o las heces,"
                " o debilidad en las piernas?",
            ),
            (
                "bp-fever",
                "ed-ucc-hours",
                "Is there a fever, or pain in the side with blood in the urine?",
                "¿Hay fiebre, o dolor en el costado con sangre en la orina?",
            ),
            (
                "bp-injury",
                "clinician-24h",
                "Did the pain start after a fall or injury, or is the person over seventy?",
                "¿El dolor empezó después de una caída o lesión, o la persona tiene más de setenta años?",
            ),
        ),
    ),
    (
        "dizziness",
        "adult",
        100,
        "dizziness or fainting",
        "mareo o desmayo",
        "clinician-24h",
        (
            (
                "dz-stroke",
                "call-911",
                "Is there new weakness, numbness, trouble speaking, or chest pain?",
                "¿Hay debilidad o adormecimiento nuevo, dificultad para hablar, o dolor de pecho?",
            ),
            (
                "dz-faint",
                "ed-now",
                "Did the person faint, or have a racing or very slow heartbeat?",
                "¿La persona se desmayó, o tiene el corazón muy acelerado o muy lento?",
            ),
            (
                "dz-bleed",
                "ed-ucc-hours",
                "Is there black or bloody stool, or vomiting that will not stop?",
                "¿Hay heces negras o con sangre, o vómito que no para?",
            ),
            (
                "dz-new",
                "clinician-today",
                "Did the dizziness start after a new medicine, or does it not go away when lying still?",
                "¿El mareo empezó tras un medicamento nuevo, o no se quita al estar acostado y quieto?",
            ),
        ),
    ),
    (
        "pregnancy",
        "adult",
        80,
        "a pregnancy concern",
        "una preocupación del embarazo",
        "clinician-24h",
        (
            (
                "pg-seizure",
                "call-911",
                "Is there a seizure, heavy bleeding soaking a pad in an hour, or fainting?",
                "¿Hay convulsiones, sangrado abundante que empapa una toalla en una hora, o desmayo?",
            ),
            (
                "pg-pain",
                "ed-now",
                "Is there severe belly pain, or fluid leaking, or fewer baby movements after 28 weeks?",
                "¿Hay dolor fuerte en el abdomen, salida de líquido, o el bebé se mueve menos después de 28 semanas?",
            ),
            (
                "pg-pressure",
                "ed-ucc-hours",
                "Is there a bad headache, vision changes, or sudden swelling of the face or hands?",
                "¿Hay un dolor de cabeza fuerte, cambios en la vista, o hinchazón repentina de la cara o las manos?",
            ),
            (
                "pg-bleed",
                "clinician-today",
                "Is there light bleeding, or burning when passing urine?",
                "¿Hay un sangrado leve, o ardor al orinar?",
            ),
        ),
    ),
    (
        "newborn",
        "pediatric",
        5,
        "a newborn concern",
        "una preocupación por un recién nacido",
        "clinician-24h",
        (
            (
                "nb-blue",
                "call-911",
                "Is the baby blue, limp, not breathing normally, or impossible to wake?",
                "¿El bebé está azulado, flácido, no respira normalmente, o no se puede despertar?",
            ),
            (
                "nb-fever",
                "ed-now",
                "Does the baby have a temperature of 100.4 degrees Fahrenheit or more, or feel cold?",
                "¿El bebé tiene una temperatura de 38 grados centígrados o más, o está frío?",
            ),
            (
                "nb-feeding",
                "ed-ucc-hours",
                "Is the baby refusing feeds, vomiting green, or without a wet diaper for six hours?",
                "¿El bebé rechaza la comida, vomita verde, o lleva seis horas sin mojar el pañal?",
            ),
            (
                "nb-yellow",
                "clinician-today",
                "Is the skin or the whites of the eyes turning yellow?",
                "¿La piel o lo blanco de los ojos se está poniendo amarillo?",
            ),
        ),
    ),
    (
        "child-vomiting",
        "pediatric",
        20,
        "vomiting or diarrhea in a child",
        "vómito o diarrea en un niño",
        "home-care",
        (
            (
                "cv-unresponsive",
                "call-911",
                "Is the child very hard to wake or not responding?",
                "¿El niño está muy difícil de despertar o no responde?",
            ),
            (
                "cv-green",
                "ed-now",
                "Is the vomit green or bloody, or is there severe belly pain?",
                "¿El vómito es verde o con sangre, o hay un dolor de abdomen fuerte?",
            ),
            (
                "cv-dry",
                "ed-ucc-hours",
                "Has the child not passed urine for eight hours, or is the mouth dry with no tears?",
                "¿El niño lleva ocho horas sin orinar, o tiene la boca seca y llora sin lágrimas?",
            ),
            (
                "cv-blood",
                "clinician-today",
                "Is there blood in the diarrhea, or has the vomiting lasted more than a day?",
                "¿Hay sangre en la diarrea, o el vómito ha durado más de un día?",
            ),
        ),
    ),
    (
        "child-cough",
        "pediatric",
        30,
        "cough or cold in a child",
        "tos o resfriado en un niño",
        "home-care",
        (
            (
                "cc-blue",
                "call-911",
                "Is the child struggling to breathe, turning blue, or too breathless to cry or speak?",
                "¿El niño lucha para respirar, se pone azul, o le falta tanto el aire que no puede llorar ni hablar?",
            ),
            (
                "cc-stridor",
                "ed-now",
                "Is there a harsh noise when breathing in while resting, or drooling and unable to swallow?",
                "¿Hace un ruido áspero al respirar estando en reposo, o babea y no puede tragar?",
            ),
            (
                "cc-fast",
                "ed-ucc-hours",
                "Is the child breathing fast, or is the skin pulling in between the ribs?",
                "¿El niño respira rápido, o se le hunde la piel entre las costillas?",
            ),
            (
                "cc-ear",
                "clinician-24h",
                "Is there an earache, or a fever for more than three days?",
                "¿Hay dolor de oído, o fiebre por más de tres días?",
            ),
        ),
    ),
    (
        "sore-throat-ear",
        "all",
        130,
        "sore throat or ear pain",
        "dolor de garganta o de oído",
        "home-care",
        (
            (
                "st-airway",
                "ed-now",
                "Is there drooling, trouble swallowing saliva, or a muffled voice with trouble breathing?",
                "¿Hay babeo, dificultad para tragar la saliva, o voz apagada con dificultad para respirar?",
            ),
            (
                "st-neck",
                "ed-ucc-hours",
                "Is the person unable to open the mouth fully, or is there swelling of one side of the neck?",
                "¿La persona no puede abrir bien la boca, o hay hinchazón de un lado del cuello?",
            ),
            (
                "st-behind-ear",
                "clinician-today",
                "Is there swelling or redness behind the ear, or fluid draining from the ear?",
                "¿Hay hinchazón o enrojecimiento detrás de la oreja, o sale líquido del oído?",
            ),
            (
                "st-fever",
                "clinician-24h",
                "Is there a fever without a cough, or white patches on the tonsils?",
                "¿Hay fiebre sin tos, o manchas blancas en las amígdalas?",
            ),
        ),
    ),
    (
        "eye",
        "all",
        140,
        "an eye problem",
        "un problema en el ojo",
        "clinician-3d",
        (
            (
                "ey-chemical",
                "ed-now",
                "Did a chemical splash into the eye, or did something hit or pierce the eye?",
                "¿Le cayó un químico en el ojo, o algo golpeó o perforó el ojo?",
            ),
            (
                "ey-vision",
                "ed-now",
                "Is there sudden loss of vision, a curtain over the vision, or new flashes and floaters?",
                "¿Hay pérdida repentina de la vista, una cortina sobre la visión, o destellos y manchas nuevos?",
            ),
            (
                "ey-pain",
                "ed-ucc-hours",
                "Is the eye very painful, or is the person unable to keep it open in light?",
                "¿El ojo duele mucho, o la persona no puede tenerlo abierto con la luz?",
            ),
            (
                "ey-swelling",
                "clinician-today",
                "Is the eyelid swollen and red with a fever, or is there pus from a contact-lens wearer's eye?",
                "¿El párpado está hinchado y rojo con fiebre,"
                " o sale pus del ojo de alguien que usa lentes de contacto?",
            ),
        ),
    ),
    (
        "bites-stings",
        "all",
        150,
        "a bite or sting",
        "una mordedura o picadura",
        "home-care",
        (
            (
                "bs-breath",
                "call-911",
                "Is there trouble breathing, swelling of the tongue or throat, or fainting after the bite or sting?",
                "¿Hay dificultad para respirar, hinchazón de la lengua o garganta,"
                " o desmayo tras la mordedura o picadura?",
            ),
            (
                "bs-snake",
                "ed-now",
                "Was it a snake, a spider known to be dangerous, or a wild animal such as a bat?",
                "¿Fue una serpiente, una araña peligrosa, o un animal salvaje como un murciélago?",
            ),
            (
                "bs-deep",
                "ed-ucc-hours",
                "Is an animal or human bite deep, on the face or hand, or bleeding a lot?",
                "¿La mordedura de animal o persona es profunda, en la cara o la mano, o sangra mucho?",
            ),
            (
                "bs-red",
                "clinician-today",
                "Is redness spreading from the bite, or is there a fever?",
                "¿El enrojecimiento se extiende desde la mordedura, o hay fiebre?",
            ),
        ),
    ),
    (
        "poisoning",
        "all",
        160,
        "a poisoning or swallowed object",
        "un envenenamiento o algo tragado",
        "clinician-24h",
        (
            (
                "po-unwell",
                "call-911",
                "Is the person very sleepy, having a seizure, or struggling to breathe?",
                "¿La persona está muy dormida, con convulsiones, o con dificultad para respirar?",
            ),
            (
                "po-battery",
                "ed-now",
                "Was a button battery, magnets, a caustic cleaner, or someone else's medicine swallowed?",
                "¿Se tragó una pila de botón, imanes, un limpiador cáustico, o la medicina de otra persona?",
            ),
            (
                "po-stuck",
                "ed-ucc-hours",
                "Is there drooling, chest pain or trouble swallowing since the object was swallowed?",
                "¿Hay babeo, dolor de pecho o dificultad para tragar desde que se tragó el objeto?",
            ),
            (
                "po-unknown",
                "clinician-today",
                "Is it unknown what or how much was taken? (Poison Control: 1-800-222-1222.)",
                "¿No se sabe qué o cuánto se tomó? (Control de Envenenamientos: 1-800-222-1222.)",
            ),
        ),
    ),
    (
        "diabetes",
        "adult",
        115,
        "diabetes or high blood sugar",
        "diabetes o azúcar alta",
        "clinician-24h",
        (
            (
                "db-unresponsive",
                "call-911",
                "Is the person unconscious, having a seizure, or too confused to swallow safely?",
                "¿La persona está inconsciente, con convulsiones, o tan confundida que no puede tragar bien?",
            ),
            (
                "db-dka",
                "ed-now",
                "Is there vomiting, deep fast breathing, or a fruity breath smell with high sugar?",
                "¿Hay vómito, respiración profunda y rápida, o aliento con olor a fruta con el azúcar alta?",
            ),
            (
                "db-high",
                "ed-ucc-hours",
                "Is the blood sugar above 400, or reading 'HI', after a correction dose?",
                "¿El azúcar está por encima de 400, o el aparato marca 'HI', después de una dosis de corrección?",
            ),
            (
                "db-low",
                "clinician-today",
                "Has there been more than one low sugar today, or is the person out of insulin or test strips?",
                "¿Ha tenido más de un azúcar baja hoy, o se quedó sin insulina o tiras de prueba?",
            ),
        ),
    ),
)
