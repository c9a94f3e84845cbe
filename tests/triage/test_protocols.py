"""Protocols as versioned data: the library, seeding, validation, drafts and activation, the read API."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from triage.dispositions import DISPOSITIONS, ladder_codes
from triage.exceptions import ProtocolInvalid
from triage.models import DispositionRung, Protocol, ProtocolVersion, validate_questions
from triage.protocol_library import LIBRARY
from triage.protocol_versions import protocol_draft_create, protocol_library_install, protocol_version_activate
from triage.protocols import PROTOCOLS, evaluate, get_protocol, get_protocol_version, protocols_for

pytestmark = pytest.mark.django_db

FIRST_CUT_IDS = {
    "chest-pain": ["cp-collapse", "cp-crushing", "cp-ongoing", "cp-breath"],
    "breathing": ["br-severe", "br-sudden", "br-inhaler", "br-fever"],
    "child-fever": ["cf-limp", "cf-infant", "cf-rash", "cf-dry", "cf-long"],
    "abdominal-pain": ["ab-shock", "ab-severe", "ab-right", "ab-vomit"],
    "injury": ["in-bleed", "in-head", "in-deform", "in-wound"],
    "medication": ["md-overdose", "md-reaction", "md-missed"],
}


def _questions(version: ProtocolVersion) -> list[dict[str, str]]:
    return [dict(q) for q in version.questions]


def test_library_has_at_least_20_adult_and_pediatric_topics_all_valid():
    codes = {p.code for p in PROTOCOLS}
    assert len(codes) == len(LIBRARY) >= 20
    assert sum(p.audience in ("adult", "all") for p in PROTOCOLS) >= 10
    assert sum(p.audience in ("pediatric", "all") for p in PROTOCOLS) >= 10
    assert {p.audience for p in PROTOCOLS} == {"adult", "pediatric", "all"}
    ladder = {d.code for d in DISPOSITIONS}
    for protocol in PROTOCOLS:
        stored = [
            {"id": q.id, "text_en": q.en, "text_es": q.es, "disposition": q.disposition} for q in protocol.questions
        ]
        assert validate_questions(stored, ladder_codes=ladder) == [], protocol.code
        assert protocol.default_disposition in ladder
        # Most serious first: a later question never implies a more urgent acuity than an earlier one.
        acuities = [q.acuity for q in protocol.questions]
        assert acuities == sorted(acuities), protocol.code
        assert protocol.default_acuity >= acuities[-1], protocol.code


def test_first_cut_codes_and_question_ids_are_kept():
    for code, ids in FIRST_CUT_IDS.items():
        assert [q.id for q in get_protocol(code).questions] == ids


def test_install_seeds_every_library_topic_once_and_never_overwrites_edits(personas, django_user_model):
    assert protocol_library_install(clinic=personas.north) == len(LIBRARY)
    assert ProtocolVersion.objects.filter(clinic=personas.north, status="active").count() == len(LIBRARY)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    edited = _questions(chest.versions.get())
    edited[0]["text_en"] = "Is the person collapsed?"
    draft = protocol_draft_create(
        clinic=personas.north,
        protocol_id=chest.pk,
        author=personas.bob,
        title_en="chest pain",
        title_es="dolor de pecho",
        questions=edited,
        default_disposition="clinician-24h",
    )
    protocol_version_activate(clinic=personas.north, version_id=draft.pk, actor=personas.bob)
    assert protocol_library_install(clinic=personas.north) == 0
    assert get_protocol("chest-pain", clinic=personas.north).questions[0].en == "Is the person collapsed?"
    call_command("install_protocols")  # the command: every clinic, idempotent
    assert Protocol.objects.filter(clinic=personas.south).count() == len(LIBRARY)
    assert Protocol.objects.filter(clinic=personas.north).count() == len(LIBRARY)


def test_protocols_for_reads_the_clinics_active_versions_else_the_library(personas):
    assert protocols_for(personas.north) == PROTOCOLS  # nothing installed: the built-in library
    assert all(p.version_id is None for p in protocols_for(personas.north))
    protocol_library_install(clinic=personas.north)
    stored = protocols_for(personas.north)
    assert [p.code for p in stored] == [p.code for p in PROTOCOLS]
    assert all(p.version == "1" and p.version_id for p in stored)
    assert protocols_for(personas.south) == PROTOCOLS  # the other clinic is untouched


def test_the_protocol_menu_costs_two_queries_however_many_protocols(personas, django_assert_num_queries):
    protocol_library_install(clinic=personas.north)
    expected = protocols_for(personas.north)
    assert len(expected) == len(LIBRARY)
    with django_assert_num_queries(2):  # the active versions, the clinic's disposition ladder
        assert protocols_for(personas.north) == expected


def test_evaluate_first_yes_decides_and_all_no_gives_the_default():
    protocol = get_protocol("abdominal-pain")
    assert evaluate(protocol, {"ab-shock": False}) is None  # still undecided
    decided = evaluate(protocol, {"ab-shock": False, "ab-severe": True})
    assert (decided.disposition, decided.acuity, decided.deciding_question) == ("ed-now", 2, "ab-severe")
    red = evaluate(protocol, {"ab-shock": True})
    assert red.red_flag and red.acuity == 1
    all_no = evaluate(protocol, {q.id: False for q in protocol.questions})
    assert (all_no.disposition, all_no.acuity, all_no.deciding_question) == ("clinician-3d", 4, None)


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ([], "at least one question"),
        ([{"id": "a", "text_en": "Q?", "text_es": "¿Q?", "disposition": "see-a-wizard"}], "unknown disposition"),
        ([{"id": "a", "text_en": " ", "text_es": "¿Q?", "disposition": "ed-now"}], "English text is empty"),
        ([{"id": "a", "text_en": "Q?", "text_es": "", "disposition": "ed-now"}], "Spanish text is empty"),
        (
            [
                {"id": "a", "text_en": "Q?", "text_es": "¿Q?", "disposition": "ed-now"},
                {"id": "a", "text_en": "R?", "text_es": "¿R?", "disposition": "home-care"},
            ],
            "duplicate id",
        ),
        ([{"id": "", "text_en": "Q?", "text_es": "¿Q?", "disposition": "ed-now"}], "id is empty"),
        ([{"id": "a b", "text_en": "Q?", "text_es": "¿Q?", "disposition": "ed-now"}], "may hold only"),
    ],
)
def test_bad_drafts_are_refused_with_a_clear_error_and_nothing_saved(personas, questions, message):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    with pytest.raises(ProtocolInvalid) as refused:
        protocol_draft_create(
            clinic=personas.north,
            protocol_id=chest.pk,
            author=personas.bob,
            title_en="chest pain",
            title_es="dolor de pecho",
            questions=questions,
            default_disposition="clinician-24h",
        )
    assert any(message in error for error in refused.value.errors), refused.value.errors
    assert chest.versions.count() == 1


def test_activation_retires_the_previous_version_and_old_versions_stay_readable(personas):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    v1 = chest.versions.get()
    questions = _questions(v1)[:2]
    draft = protocol_draft_create(
        clinic=personas.north,
        protocol_id=chest.pk,
        author=personas.bob,
        title_en="chest pain (short)",
        title_es="dolor de pecho",
        questions=questions,
        default_disposition="clinician-today",
    )
    assert (draft.version, draft.status) == (2, "draft")
    assert len(get_protocol("chest-pain", clinic=personas.north).questions) == 4  # a draft changes nothing
    protocol_version_activate(clinic=personas.north, version_id=draft.pk, actor=personas.bob)
    v1.refresh_from_db()
    assert v1.status == "retired"
    active = get_protocol("chest-pain", clinic=personas.north)
    assert (active.version, len(active.questions), active.default_disposition) == ("2", 2, "clinician-today")
    assert len(get_protocol_version(v1.pk).questions) == 4  # what earlier callers heard


def test_at_most_one_active_version_per_protocol_in_the_database(personas):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    v1 = chest.versions.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        ProtocolVersion.objects.create(
            protocol=chest,
            clinic=personas.north,
            version=2,
            status="active",
            title_en="x",
            title_es="x",
            questions=v1.questions,
            default_disposition="home-care",
        )


def test_another_clinics_protocol_cannot_be_drafted_or_activated(personas):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    with pytest.raises(Protocol.DoesNotExist):
        protocol_draft_create(
            clinic=personas.south,
            protocol_id=chest.pk,
            author=personas.carol,
            title_en="x",
            title_es="x",
            questions=chest.versions.get().questions,
            default_disposition="home-care",
        )
    with pytest.raises(ProtocolVersion.DoesNotExist):
        protocol_version_activate(clinic=personas.south, version_id=chest.versions.get().pk, actor=personas.carol)


def test_a_clinic_ladder_sets_the_acuity_of_its_protocols_and_what_is_valid(personas):
    for position, d in enumerate(DISPOSITIONS):
        # This clinic treats "clinician today" as less urgent (level 4) and has no 2-week rung.
        acuity = 4 if d.code == "clinician-today" else d.acuity
        DispositionRung.objects.create(
            clinic=personas.north,
            code=d.code,
            display=d.display,
            display_es=d.display_es,
            acuity=acuity,
            position=position,
            active=d.code != "clinician-2w",
        )
    assert "clinician-2w" not in ladder_codes(personas.north)
    protocol_library_install(clinic=personas.north)
    breathing = get_protocol("breathing", clinic=personas.north)
    assert breathing.questions[3].disposition == "clinician-today" and breathing.questions[3].acuity == 4
    assert get_protocol("breathing").questions[3].acuity == 3  # the default ladder is unchanged
    back = Protocol.objects.get(clinic=personas.north, code="back-pain")
    with pytest.raises(ProtocolInvalid, match="default disposition"):
        protocol_draft_create(
            clinic=personas.north,
            protocol_id=back.pk,
            author=personas.bob,
            title_en="back pain",
            title_es="dolor de espalda",
            questions=back.versions.get().questions,
            default_disposition="clinician-2w",
        )
