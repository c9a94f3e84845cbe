"""Roles nurse / supervisor / clinic admin are Django Groups with permissions (clinics.roles, data migration
0011); views check permissions, not role strings."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from clinics.services import staff_create
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_migration_made_the_three_groups_with_their_permissions(db):
    perms = {
        group.name: set(group.permissions.values_list("codename", flat=True))
        for group in Group.objects.filter(name__in=["Nurse", "Supervisor", "Clinic admin"])
    }
    assert perms == {
        "Nurse": {"work_cases"},
        "Supervisor": {"work_cases", "supervise_clinic", "cosign_acuity", "grant_break_glass"},
        "Clinic admin": {"work_cases", "supervise_clinic", "administer_clinic", "review_break_glass"},
    }


def test_staff_create_puts_the_user_in_the_group_of_the_role_and_moves_them(personas):
    assert list(personas.alice.groups.values_list("name", flat=True)) == ["Nurse"]
    assert list(personas.bob.groups.values_list("name", flat=True)) == ["Supervisor"]
    promoted = staff_create(clinic=personas.north, role="admin", username="alice", password=PASSWORD).user
    assert list(promoted.groups.values_list("name", flat=True)) == ["Clinic admin"]
    assert promoted.has_perm("clinics.administer_clinic") and not promoted.has_perm("clinics.grant_break_glass")


def test_the_dashboard_follows_the_permission_not_the_role_string(personas):
    assert _client(personas.alice).get("/console/dashboard/").status_code == 403
    assert _client(personas.bob).get("/console/dashboard/").status_code == 200
    supervise = Permission.objects.get(codename="supervise_clinic")
    personas.alice.user_permissions.add(supervise)  # a nurse granted the permission (role string unchanged)
    assert _client(personas.alice).get("/console/dashboard/").status_code == 200
    Group.objects.get(name="Supervisor").permissions.remove(supervise)
    assert _client(personas.bob).get("/console/dashboard/").status_code == 403


def test_admin_pages_follow_the_administer_permission(personas):
    erin = staff_create(clinic=personas.north, role="admin", username="erin", password=PASSWORD).user
    assert _client(erin).get("/console/admin/routing/").status_code == 200
    assert _client(personas.bob).get("/console/admin/routing/").status_code == 403
    Group.objects.get(name="Clinic admin").permissions.remove(Permission.objects.get(codename="administer_clinic"))
    assert _client(erin).get("/console/admin/routing/").status_code == 403
    assert _client(erin).get("/console/admin/audit/").status_code == 403


def test_the_console_needs_the_work_cases_permission(personas):
    assert _client(personas.alice).get("/console/").status_code == 200
    personas.alice.groups.clear()
    assert _client(personas.alice).get("/console/").status_code == 403


def test_the_api_needs_the_work_cases_permission(personas):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(personas.alice)
    assert api.get("/api/v1/cases/").status_code == 200
    personas.alice.groups.clear()
    personas.alice = type(personas.alice).objects.get(pk=personas.alice.pk)  # no cached permissions
    api.force_authenticate(personas.alice)
    response = api.get("/api/v1/cases/")
    assert response.status_code == 403 and "role" in response.json()["detail"]
