"""Staff roles as Django Groups with permissions (issue 6: roles nurse, supervisor, clinic admin).

Code checks permissions (`user.has_perm("clinics.supervise_clinic")`), never role strings: a role is the
group a StaffMember's user belongs to, kept in step by `sync_role_group` (called by `staff_create`; existing
staff were placed by data migration `clinics/migrations/0012_role_groups.py`). The permissions are declared
on `StaffMember.Meta.permissions` and listed here per role:

| permission (clinics.*) | nurse | supervisor | clinic admin | what it opens |
|---|---|---|---|---|
| `work_cases` | yes | yes | yes | the console: queue, cases, charts of open and recently closed cases |
| `supervise_clinic` | | yes | yes | dashboard, supervisor alerts on the live feed, co-signing acuity changes |
| `cosign_acuity` | | yes | | co-signing a nurse's lowering of acuity (eCTAS: never the admin's call) |
| `grant_break_glass` | | yes | | opening an older case's chart with a written reason, 60 min (triage.breakglass) |
| `administer_clinic` | | | yes | routing, protocols, interfaces, the audit log, the break-glass review page |
| `review_break_glass` | | | yes | marking break-glass grants reviewed |

Clinic isolation is separate and always applies: every permission is exercised inside the user's own clinic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# (codename, human name): also declared in StaffMember.Meta.permissions.
PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("work_cases", "Work cases in the nurse console"),
    ("supervise_clinic", "Supervise the clinic (dashboard, alerts, co-sign acuity changes)"),
    ("cosign_acuity", "Co-sign a nurse's lowering of acuity"),
    ("grant_break_glass", "Open an older case's chart by break-glass, with a reason"),
    ("administer_clinic", "Administer the clinic (routing, protocols, interfaces, audit log)"),
    ("review_break_glass", "Review break-glass grants"),
)

ROLE_GROUPS: dict[str, str] = {"nurse": "Nurse", "supervisor": "Supervisor", "admin": "Clinic admin"}

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "nurse": ("work_cases",),
    "supervisor": ("work_cases", "supervise_clinic", "cosign_acuity", "grant_break_glass"),
    "admin": ("work_cases", "supervise_clinic", "administer_clinic", "review_break_glass"),
}

WORK_CASES = "clinics.work_cases"
SUPERVISE = "clinics.supervise_clinic"
COSIGN_ACUITY = "clinics.cosign_acuity"
GRANT_BREAK_GLASS = "clinics.grant_break_glass"
ADMINISTER = "clinics.administer_clinic"
REVIEW_BREAK_GLASS = "clinics.review_break_glass"


def ensure_role_groups() -> None:
    """Create the three groups with exactly their permissions (idempotent; also run by the data migration)."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    from clinics.models import StaffMember

    content_type = ContentType.objects.get_for_model(StaffMember)
    perms = {
        code: Permission.objects.get_or_create(codename=code, content_type=content_type, defaults={"name": name})[0]
        for code, name in PERMISSIONS
    }
    for role, group_name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.set([perms[code] for code in ROLE_PERMISSIONS[role]])


def sync_role_group(*, user: User, role: str) -> None:
    """Put `user` in the group of `role` and out of the other role groups (creating the groups if needed)."""
    from django.contrib.auth.models import Group

    if not Group.objects.filter(name=ROLE_GROUPS[role]).exists():
        ensure_role_groups()
    others = [name for key, name in ROLE_GROUPS.items() if key != role]
    user.groups.remove(*Group.objects.filter(name__in=others))
    user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        if hasattr(user, cache):
            delattr(user, cache)
