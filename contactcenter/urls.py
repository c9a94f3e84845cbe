"""Nurse console URLs, mounted at /console/ (namespace "console")."""

from django.urls import path

from contactcenter import views

app_name = "console"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("queue/", views.queue_partial, name="queue-partial"),
    path("next/", views.next_case, name="next"),
    path("cases/<int:case_id>/", views.case_detail, name="case"),
    path("cases/<int:case_id>/status/", views.case_status_partial, name="case-status"),
    path("cases/<int:case_id>/accept/", views.case_accept, name="case-accept"),
    path("cases/<int:case_id>/release/", views.case_release, name="case-release"),
    path("cases/<int:case_id>/disposition/", views.case_disposition, name="case-disposition"),
    path("cases/<int:case_id>/callback-attempt/", views.callback_attempt, name="case-callback-attempt"),
    path("presence/", views.presence_set, name="presence"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/panels/", views.dashboard_panels, name="dashboard-panels"),
]
