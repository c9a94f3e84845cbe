"""REST API of the nurse console (DRF), one APIView per operation (HackSoft style), under /api/v1/.

Authentication: session (the console) or token (`POST auth/token/`, header `Authorization: Token <key>`).
Everything is scoped to the caller's clinic. Domain errors map to HTTP in one place
(`ClinicAPIView.handle_exception`): not staff -> 403; unknown id or another clinic's case -> 404 (a case's
existence never leaks across clinics); a case held by someone else or in the wrong state -> 409; an
unknown disposition -> 400.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinics import db_scope, roles
from clinics.selectors import NotStaff, staff_for_user
from contactcenter import escalation, protocols, selectors, services
from contactcenter.serializers import (
    AcuityChangeInputSerializer,
    AcuityOverrideSerializer,
    CallbackAttemptInputSerializer,
    CaseDetailSerializer,
    CaseSerializer,
    CosignInputSerializer,
    DispositionInputSerializer,
    DispositionSerializer,
    ErrorSerializer,
    ProtocolSerializer,
)
from triage.dispositions import ladder_for
from triage.exceptions import InvalidOverride, InvalidTransition, NotYourCase, OverrideNotAllowed, UnknownDisposition
from triage.models import AcuityOverride, Case, CaseState, Protocol, ProtocolVersion
from triage.selectors import access_case, case_list, case_timeline, routing_ledger


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The case cannot take this action now."
    default_code = "conflict"


ERRORS = {
    403: OpenApiResponse(ErrorSerializer, description="Not signed in, or not staff of any clinic."),
    404: OpenApiResponse(ErrorSerializer, description="No such case in your clinic."),
    409: OpenApiResponse(ErrorSerializer, description="The case is held by another nurse or is in the wrong state."),
}


class WorksCases(permissions.BasePermission):
    """The caller holds `clinics.work_cases` (every staff role; clinics.roles)."""

    message = "Your role does not include the console API."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.has_perm(roles.WORK_CASES))


class ClinicAPIView(APIView):
    """Base of every console API view: maps domain errors to HTTP replies (the one place), allows authenticated
    callers with `clinics.work_cases` only, and runs the view in the authenticated user's clinic scope
    (PostgreSQL row-level security, `clinics.db_scope`): DRF authenticates inside the view (token), after
    `ClinicScopeMiddleware` saw an anonymous request; the middleware's scope restores the previous value when
    the response is done."""

    permission_classes = [permissions.IsAuthenticated, WorksCases]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        if connection.vendor == "postgresql":
            db_scope.switch(db_scope.scope_for_user(request.user))

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, NotStaff):
            exc = exceptions.PermissionDenied("Not a member of any clinic.")
        elif isinstance(exc, Case.DoesNotExist):
            exc = exceptions.NotFound("No such case.")
        elif isinstance(exc, NotYourCase):
            exc = Conflict("This case is held by another nurse.")
        elif isinstance(exc, InvalidTransition):
            exc = Conflict(str(exc))
        elif isinstance(exc, UnknownDisposition):
            exc = exceptions.ValidationError({"disposition": ["Unknown disposition code."]})
        elif isinstance(exc, (Protocol.DoesNotExist, ProtocolVersion.DoesNotExist)):
            exc = exceptions.NotFound("No such protocol (version) in your clinic.")
        elif isinstance(exc, AcuityOverride.DoesNotExist):
            exc = exceptions.NotFound("No such acuity change in your clinic.")
        elif isinstance(exc, OverrideNotAllowed):
            exc = exceptions.PermissionDenied(str(exc))
        elif isinstance(exc, InvalidOverride):
            exc = exceptions.ValidationError({"detail": [str(exc)]})
        return super().handle_exception(exc)


def _detail(case: Case) -> dict[str, Any]:
    serializer = CaseDetailSerializer(
        case,
        context={
            "timeline": case_timeline(case=case),
            "writebacks": selectors.writebacks_for_case(case=case),
            "routing_ledger": routing_ledger(case=case),
        },
    )
    data: dict[str, Any] = serializer.data
    return data


class CaseListApi(ClinicAPIView):
    """Cases of the caller's clinic, newest first, optionally of one `state`."""

    @extend_schema(
        operation_id="cases_list",
        summary="Cases of my clinic, newest first",
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=CaseState.values, description="Only cases in this state")
        ],
        responses={200: CaseSerializer(many=True), 403: ERRORS[403]},
    )
    def get(self, request: Request) -> Response:
        staff = staff_for_user(request.user)
        state = request.query_params.get("state") or None
        if state is not None and state not in CaseState.values:
            raise exceptions.ValidationError({"state": [f"Unknown state; expected one of {CaseState.values}."]})
        return Response(CaseSerializer(case_list(clinic=staff.clinic, state=state), many=True).data)


class CaseDetailApi(ClinicAPIView):
    """One case of the caller's clinic with the caller's answers, its timeline and the EHR write-back rows."""

    @extend_schema(
        operation_id="cases_retrieve",
        summary="One case with its answers, timeline and EHR write-back states",
        responses={200: CaseDetailSerializer, 403: ERRORS[403], 404: ERRORS[404]},
    )
    def get(self, request: Request, case_id: int) -> Response:
        case = access_case(user=request.user, case_id=case_id)
        data = _detail(case)
        selectors.audit_case_read(user=request.user, case=case, source_ip=request.META.get("REMOTE_ADDR") or None)
        return Response(data)


class CaseNextApi(ClinicAPIView):
    """Take the next case: reserve the head of the caller's clinic queue."""

    @extend_schema(
        operation_id="cases_next",
        summary="Take the next case (reserve the head of the queue)",
        description=(
            "Reserves the head of my clinic's queue (accumulating priority, DESIGN §5) for me. A nurse who "
            "already holds a reserved or in-progress case gets that case back. The reservation must be "
            "accepted within TRIAGE_RESERVATION_SECONDS or the case returns to the queue."
        ),
        request=None,
        responses={
            200: CaseDetailSerializer,
            204: OpenApiResponse(description="The queue is empty."),
            403: ERRORS[403],
        },
    )
    def post(self, request: Request) -> Response:
        case = services.claim_next(user=request.user)
        if case is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_detail(access_case(user=request.user, case_id=case.pk)))


class CaseAcceptApi(ClinicAPIView):
    """Accept the caller's reservation of a case (`reserved -> in_progress`)."""

    @extend_schema(
        operation_id="cases_accept",
        summary="Accept my reservation (reserved -> in progress)",
        request=None,
        responses={200: CaseDetailSerializer, 403: ERRORS[403], 404: ERRORS[404], 409: ERRORS[409]},
    )
    def post(self, request: Request, case_id: int) -> Response:
        case = services.accept(user=request.user, case_id=case_id)
        return Response(_detail(access_case(user=request.user, case_id=case.pk)))


class CaseDispositionApi(ClinicAPIView):
    """Record the disposition and note, close the case, queue the EHR write-back (one transaction)."""

    @extend_schema(
        operation_id="cases_disposition",
        summary="Record the disposition and close the case",
        description=(
            "Records the nurse-confirmed disposition and note on a case I hold (reserved or in progress), "
            "closes it, and queues the EHR write-back in the same transaction."
        ),
        request=DispositionInputSerializer,
        responses={
            200: CaseDetailSerializer,
            400: OpenApiResponse(description="Unknown disposition code or invalid note."),
            403: ERRORS[403],
            404: ERRORS[404],
            409: ERRORS[409],
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        access_case(user=request.user, case_id=case_id)  # another clinic's case: 404 before validation
        payload = DispositionInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        case = services.disposition_record(
            user=request.user,
            case_id=case_id,
            disposition_code=payload.validated_data["disposition"],
            note=payload.validated_data["note"],
            source_ip=request.META.get("REMOTE_ADDR") or None,
        )
        return Response(_detail(access_case(user=request.user, case_id=case.pk)))


class DispositionListApi(ClinicAPIView):
    """My clinic's disposition ladder (`triage.dispositions.ladder_for`), most urgent first, with the acuity
    each implies (the default ladder when the clinic has not configured its own)."""

    @extend_schema(
        operation_id="dispositions_list",
        summary="My clinic's disposition ladder, most urgent first",
        responses={200: DispositionSerializer(many=True), 403: ERRORS[403]},
    )
    def get(self, request: Request) -> Response:
        staff = staff_for_user(request.user)
        return Response(DispositionSerializer(ladder_for(staff.clinic), many=True).data)


class CaseCallbackAttemptApi(ClinicAPIView):
    """Record the result of one callback attempt on a case I hold (closed-loop callbacks)."""

    @extend_schema(
        operation_id="cases_callback_attempt",
        summary="Record a callback attempt's result",
        description=(
            "answered: the case stays in progress with me. no_answer / voicemail with attempts left: the case "
            "goes back to the queue with its place kept, due again after the clinic's spacing. The last "
            "unanswered attempt, or wrong_number: the patient is texted (not for a wrong number), the on-call "
            "clinician paged, and the case stays with me for the disposition."
        ),
        request=CallbackAttemptInputSerializer,
        responses={
            200: CaseDetailSerializer,
            400: OpenApiResponse(description="Unknown result."),
            403: ERRORS[403],
            404: ERRORS[404],
            409: ERRORS[409],
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        access_case(user=request.user, case_id=case_id)
        payload = CallbackAttemptInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        outcome = escalation.callback_attempt(
            user=request.user, case_id=case_id, result=payload.validated_data["result"]
        )
        return Response(_detail(access_case(user=request.user, case_id=outcome.case.pk)))


class ProtocolListApi(ClinicAPIView):
    """My clinic's symptom protocols in IVR menu order, each with its versions."""

    @extend_schema(
        operation_id="protocols_list",
        summary="My clinic's protocols and their versions",
        responses={200: ProtocolSerializer(many=True), 403: ERRORS[403]},
    )
    def get(self, request: Request) -> Response:
        return Response(ProtocolSerializer(protocols.protocol_list(user=request.user), many=True).data)


class ProtocolQuestionnaireApi(ClinicAPIView):
    """A protocol version as a FHIR R4 Questionnaire (the active version unless `?version=N`)."""

    @extend_schema(
        operation_id="protocols_questionnaire",
        summary="A protocol version as a FHIR R4 Questionnaire",
        description=(
            "url `urn:careline:protocol:<code>`, version, status (draft/active/retired); one boolean item per "
            'question, most serious first, with the disposition a "yes" implies as an extension.'
        ),
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, description="Version number (default: active)")],
        responses={200: OpenApiTypes.OBJECT, 403: ERRORS[403], 404: ERRORS[404]},
    )
    def get(self, request: Request, protocol_id: int) -> Response:
        raw = request.query_params.get("version")
        if raw is not None and not raw.isdigit():
            raise exceptions.ValidationError({"version": ["A version number."]})
        version = protocols.version_get(user=request.user, protocol_id=protocol_id, version=int(raw) if raw else None)
        return Response(protocols.questionnaire_for(version), content_type="application/fhir+json")


class CaseAcuityApi(ClinicAPIView):
    """Change a case's acuity with a reason: raising applies at once, lowering waits for a supervisor."""

    @extend_schema(
        operation_id="cases_acuity_change",
        summary="Raise (applies now) or lower (needs a supervisor co-sign) a case's acuity",
        request=AcuityChangeInputSerializer,
        responses={
            201: AcuityOverrideSerializer,
            400: OpenApiResponse(description="No reason, same level, case not open, lowering already pending."),
            403: ERRORS[403],
            404: ERRORS[404],
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        access_case(user=request.user, case_id=case_id)  # another clinic's case: 404 before validation
        payload = AcuityChangeInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        override = services.acuity_change(
            user=request.user,
            case_id=case_id,
            to_acuity=payload.validated_data["acuity"],
            reason=payload.validated_data["reason"],
        )
        return Response(AcuityOverrideSerializer(override).data, status=status.HTTP_201_CREATED)


class AcuityOverrideCosignApi(ClinicAPIView):
    """A supervisor co-signs (`approve: true`, applies the lower acuity) or declines a pending lowering."""

    @extend_schema(
        operation_id="acuity_overrides_cosign",
        summary="Co-sign or decline a pending lower acuity (supervisors)",
        request=CosignInputSerializer,
        responses={
            200: AcuityOverrideSerializer,
            400: OpenApiResponse(description="Not pending any more, or the case changed meanwhile."),
            403: ERRORS[403],
            404: ERRORS[404],
        },
    )
    def post(self, request: Request, override_id: int) -> Response:
        payload = CosignInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        override = services.acuity_cosign(
            user=request.user, override_id=override_id, approve=payload.validated_data["approve"]
        )
        return Response(AcuityOverrideSerializer(override).data)
