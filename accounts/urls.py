"""Sign-in URLs under /accounts/ (the second factor and enrolment)."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("otp/", views.otp_verify, name="otp-verify"),
    path("otp/enrol/", views.otp_enrol, name="otp-enrol"),
]
