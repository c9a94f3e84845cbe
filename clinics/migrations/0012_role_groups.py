"""Data migration: the role Groups (Nurse, Supervisor, Clinic admin) with their permissions, and every existing
StaffMember's user placed in the group of its role (clinics.roles). Reversible: removes the groups."""

from django.db import migrations

PERMISSIONS = (
    ("work_cases", "Work cases in the nurse console"),
    ("supervise_clinic", "Supervise the clinic (dashboard, alerts, co-sign acuity changes)"),
    ("cosign_acuity", "Co-sign a nurse's lowering of acuity"),
    ("grant_break_glass", "Open an older case's chart by break-glass, with a reason"),
    ("administer_clinic", "Administer the clinic (routing, protocols, interfaces, audit log)"),
    ("review_break_glass", "Review break-glass grants"),
)
ROLE_GROUPS = {"nurse": "Nurse", "supervisor": "Supervisor", "admin": "Clinic admin"}
ROLE_PERMISSIONS = {
    "nurse": ("work_cases",),
    "supervisor": ("work_cases", "supervise_clinic", "cosign_acuity", "grant_break_glass"),
    "admin": ("work_cases", "supervise_clinic", "administer_clinic", "review_break_glass"),
}


def forwards(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    StaffMember = apps.get_model("clinics", "StaffMember")
    content_type, _ = ContentType.objects.get_or_create(app_label="clinics", model="staffmember")
    perms = {
        code: Permission.objects.get_or_create(codename=code, content_type=content_type, defaults={"name": name})[0]
        for code, name in PERMISSIONS
    }
    groups = {}
    for role, name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set([perms[code] for code in ROLE_PERMISSIONS[role]])
        groups[role] = group
    for member in StaffMember.objects.select_related("user"):
        if member.role in groups:
            member.user.groups.add(groups[member.role])


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_GROUPS.values()).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("clinics", "0011_alter_staffmember_options"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
