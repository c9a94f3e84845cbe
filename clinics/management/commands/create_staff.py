"""`manage.py create_staff --clinic SLUG --role nurse|supervisor|admin --username --password`."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.db_scope import system_scoped
from clinics.models import Clinic, StaffMember
from clinics.services import staff_create


class Command(BaseCommand):
    help = "Create a staff user in a clinic, or reset an existing user's password and role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", required=True, help="clinic slug")
        parser.add_argument("--role", required=True, choices=StaffMember.Role.values)
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: object, **opts: str) -> None:
        try:
            clinic = Clinic.objects.get(slug=opts["clinic"])
        except Clinic.DoesNotExist as exc:
            raise CommandError(f"no clinic with slug {opts['clinic']!r}") from exc
        member = staff_create(clinic=clinic, role=opts["role"], username=opts["username"], password=opts["password"])
        self.stdout.write(f"{member.user.get_username()}: {member.role} in {clinic.slug}")
