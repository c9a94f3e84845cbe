"""Pre-call echo endpoints, mounted at /precall/ (namespace "precall"); used by staff and patients alike."""

from django.urls import path

from contactcenter import precall_views

app_name = "precall"
urlpatterns = [
    path("offer/", precall_views.offer, name="offer"),
    path("sessions/<str:session_id>/hangup/", precall_views.hangup, name="hangup"),
]
