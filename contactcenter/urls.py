"""Nurse console URLs, mounted at /console/ (namespace "console")."""

from django.urls import path

from contactcenter import admin_views, audit_views, interfaces_views, routing_views, views, visit_views

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
    path("cases/<int:case_id>/video/", visit_views.visit_start, name="case-video"),
    path("visits/<uuid:room>/", visit_views.nurse_visit, name="visit"),
    path("visits/<uuid:room>/end/", visit_views.nurse_visit_end, name="visit-end"),
    path("visits/<uuid:room>/video-failed/", visit_views.nurse_visit_failed, name="visit-failed"),
    path("cases/<int:case_id>/attachments/<int:attachment_id>/", visit_views.case_attachment, name="case-attachment"),
    path("cases/<int:case_id>/conversation/", views.case_conversation_partial, name="case-conversation"),
    path("cases/<int:case_id>/call/", views.case_call_patient, name="case-call"),
    path("cases/<int:case_id>/sms/", views.case_sms_reply, name="case-sms"),
    path("presence/", views.presence_set, name="presence"),
    path("precall/", views.precall_page, name="precall"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/panels/", views.dashboard_panels, name="dashboard-panels"),
    path("dashboard/staffing/", views.dashboard_staffing, name="dashboard-staffing"),
    # Clinic admins: routing rules, queues, business hours, holidays.
    path("admin/routing/", routing_views.routing_page, name="routing-admin"),
    path("admin/routing/rules/new/", routing_views.rule_edit, name="routing-rule-new"),
    path("admin/routing/rules/<int:rule_id>/", routing_views.rule_edit, name="routing-rule"),
    path("admin/routing/rules/<int:rule_id>/delete/", routing_views.rule_delete, name="routing-rule-delete"),
    path("admin/routing/rules/<int:rule_id>/move/", routing_views.rule_move, name="routing-rule-move"),
    path("admin/routing/queues/", routing_views.queue_add, name="routing-queue-add"),
    path("admin/routing/hours/", routing_views.hours_add, name="routing-hours-add"),
    path("admin/routing/hours/<int:hours_id>/delete/", routing_views.hours_delete, name="routing-hours-delete"),
    path("admin/routing/holidays/", routing_views.holiday_add, name="routing-holiday-add"),
    path(
        "admin/routing/holidays/<int:holiday_id>/delete/", routing_views.holiday_delete, name="routing-holiday-delete"
    ),
    path("cases/<int:case_id>/acuity/", views.case_acuity, name="case-acuity"),
    path("cases/<int:case_id>/break-glass/", views.case_break_glass, name="case-break-glass"),
    path("admin/break-glass/", views.break_glass_review_page, name="break-glass-admin"),
    path("admin/break-glass/<int:grant_id>/reviewed/", views.break_glass_reviewed, name="break-glass-reviewed"),
    path("cases/<int:case_id>/acuity/<int:override_id>/cosign/", views.acuity_cosign, name="case-acuity-cosign"),
    path("admin/protocols/", admin_views.protocol_list, name="admin-protocols"),
    path("admin/protocols/install/", admin_views.library_install, name="admin-protocols-install"),
    path("admin/protocols/<int:protocol_id>/", admin_views.protocol_detail, name="admin-protocol"),
    path("admin/protocols/<int:protocol_id>/edit/", admin_views.protocol_edit, name="admin-protocol-edit"),
    path(
        "admin/protocols/<int:protocol_id>/versions/<int:version_id>/activate/",
        admin_views.version_activate,
        name="admin-protocol-activate",
    ),
    # Interface analysts (clinic admins): outbound queues per destination, retry / skip with a reason.
    # Clinic admins: the audit log of their clinic, searchable, with a CSV export (itself audited).
    path("admin/audit/", audit_views.audit_page, name="audit-admin"),
    path("admin/interfaces/", interfaces_views.interfaces_page, name="interfaces-admin"),
    path("admin/interfaces/<int:writeback_id>/retry/", interfaces_views.writeback_retry, name="interfaces-retry"),
    path("admin/interfaces/<int:writeback_id>/skip/", interfaces_views.writeback_skip, name="interfaces-skip"),
]
