"""The patient's video visit URLs, mounted at /visit/ (namespace "visit"); the nurse's are under /console/."""

from django.urls import path

from contactcenter import visit_views

app_name = "visit"
urlpatterns = [
    path("join/<str:token>/", visit_views.patient_join, name="join"),
    path("<uuid:room>/", visit_views.patient_visit, name="patient"),
    path("<uuid:room>/ice/", visit_views.ice_servers, name="ice"),
    path("<uuid:room>/history/", visit_views.visit_history, name="history"),
    path("<uuid:room>/attachments/", visit_views.visit_attachment_upload, name="attachments"),
]
