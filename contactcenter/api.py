"""REST API of the nurse console (DRF), one APIView per operation (HackSoft style), under /api/v1/.

Authentication: session (the console) or token (`POST auth/token/`, header `Authorization: Token <key>`).
Everything is scoped to the caller's clinic. Domain errors map to HTTP in one place
(`ClinicAPIView.handle_exception`): not staff -> 403; unknown id or another clinic's case -> 404 (a case's
existence never leaks across clinics); a case held by someone else or in the wrong state -> 409; an
unknown disposition -> 400.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinics.selectors import NotStaff, staff_for_user
from contactcenter import escalation, selectors, services
from contactcenter.serializers import (
    CallbackAttemptInputSerializer,
    CaseDetailSerializer,
    CaseSerializer,
    DispositionInputSerializer,
    DispositionSerializer,
    ErrorSerializer,
)
from triage.dispositions import DISPOSITIONS
from triage.exceptions import InvalidTransition, NotYourCase, UnknownDisposition
from triage.models import Case, CaseState
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


class ClinicAPIView(APIView):
    """Base of every console API view: maps domain errors to HTTP replies (the one place)."""

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
        return Response(_detail(access_case(user=request.user, case_id=case_id)))


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
    """The disposition ladder (`triage.dispositions`), most urgent first, with the acuity each implies."""

    @extend_schema(
        operation_id="dispositions_list",
        summary="The disposition ladder, most urgent first",
        responses={200: DispositionSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        return Response(DispositionSerializer(DISPOSITIONS, many=True).data)


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
