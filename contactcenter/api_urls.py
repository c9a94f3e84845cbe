"""REST API URLs, mounted at /api/v1/ (see `contactcenter.api`)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from accounts.views import ObtainTokenApi
from contactcenter import api

urlpatterns = [
    path("auth/token/", ObtainTokenApi.as_view(), name="api-token"),
    path("cases/", api.CaseListApi.as_view(), name="api-case-list"),
    path("cases/next/", api.CaseNextApi.as_view(), name="api-case-next"),
    path("cases/<int:case_id>/", api.CaseDetailApi.as_view(), name="api-case-detail"),
    path("cases/<int:case_id>/accept/", api.CaseAcceptApi.as_view(), name="api-case-accept"),
    path("cases/<int:case_id>/disposition/", api.CaseDispositionApi.as_view(), name="api-case-disposition"),
    path(
        "cases/<int:case_id>/callback-attempts/", api.CaseCallbackAttemptApi.as_view(), name="api-case-callback-attempt"
    ),
    path("cases/<int:case_id>/acuity/", api.CaseAcuityApi.as_view(), name="api-case-acuity"),
    path("acuity-overrides/<int:override_id>/cosign/", api.AcuityOverrideCosignApi.as_view(), name="api-cosign"),
    path("dispositions/", api.DispositionListApi.as_view(), name="api-dispositions"),
    path("protocols/", api.ProtocolListApi.as_view(), name="api-protocols"),
    path(
        "protocols/<int:protocol_id>/questionnaire/",
        api.ProtocolQuestionnaireApi.as_view(),
        name="api-protocol-questionnaire",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
