"""URL map: console, API, Twilio webhooks, admin, auth."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:queue", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("ivr/", include("ivr.urls")),
    path("console/", include("contactcenter.urls")),
    path("api/v1/", include("contactcenter.api_urls")),
]

if settings.CARELINE_DEMO:
    urlpatterns.append(path("simulator/", include("ivr.simulator_urls")))
