"""URL map: console, API, Twilio webhooks, admin, auth."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from contactcenter import smart_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:queue", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("ivr/", include("ivr.urls")),
    path("console/admin/", include("ops.urls")),  # capacity planner (clinic admins)
    path("console/", include("contactcenter.urls")),
    path("api/v1/", include("contactcenter.api_urls")),
    # Pre-call test: the server-side WebRTC echo (staff sessions and patients' visit tokens).
    path("precall/", include("contactcenter.precall_urls")),
    # Video visits, the patient's side (no account: the SMS join link binds the browser session).
    path("visit/", include("contactcenter.visit_urls")),
    # SMART on FHIR: the keys to register at the EHR, and the EHR launch of the console.
    path(".well-known/jwks.json", smart_views.jwks, name="smart-jwks"),
    path("smart/launch/", smart_views.launch, name="smart-launch"),
    path("smart/callback/", smart_views.callback, name="smart-callback"),
]

if settings.CARELINE_DEMO:
    urlpatterns.append(path("simulator/", include("ivr.simulator_urls")))
