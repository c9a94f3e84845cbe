"""`manage.py verify_audit_chain [--clinic SLUG]`: recompute every clinic's audit hash chain.

For each clinic (or the one given), reads its audit rows in `seq` order and checks that the seqs run 1, 2, 3 ...
without a gap (a deleted row), that each `prev_hash` equals the previous row's `hash` (a deleted or reordered
row), and that each `hash` equals `clinics.models.audit_hash` of the row's fields (an edited row). Prints
"ok" per intact clinic; on the first broken link of a clinic prints its seq and id and the reason, and the
command exits non-zero (CommandError, exit status 1). Deleting the newest rows of a chain leaves no gap; compare
the printed head (seq, hash) with one recorded elsewhere to catch that.
"""

from __future__ import annotations

from typing import NamedTuple

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.db_scope import system_scoped
from clinics.models import AUDIT_GENESIS_HASH, AuditEvent, Clinic


class ChainBreak(NamedTuple):
    seq: int | None
    id: int
    reason: str


def first_break(clinic: Clinic) -> tuple[ChainBreak | None, int, str]:
    """The first broken link of `clinic`'s chain (None when intact), the rows read and the head hash."""
    expected_seq, prev_hash, count = 1, AUDIT_GENESIS_HASH, 0
    rows = AuditEvent.objects.filter(clinic=clinic).order_by("seq", "pk")
    for event in rows.iterator(chunk_size=2000):
        count += 1
        if event.seq != expected_seq:
            return (
                ChainBreak(event.seq, event.pk, f"expected seq {expected_seq} (rows missing or renumbered)"),
                count,
                "",
            )
        if event.prev_hash != prev_hash:
            return ChainBreak(event.seq, event.pk, "prev_hash does not match the previous row's hash"), count, ""
        if event.computed_hash() != event.hash:
            return ChainBreak(event.seq, event.pk, "hash does not match the row's fields (row altered)"), count, ""
        expected_seq, prev_hash = expected_seq + 1, event.hash
    return None, count, prev_hash


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log (every clinic, or --clinic SLUG); exit 1 on a broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", help="slug of one clinic (default: all clinics)")

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: object, **opts: str | None) -> None:
        clinics = Clinic.objects.order_by("slug")
        if opts.get("clinic"):
            clinics = clinics.filter(slug=opts["clinic"])
            if not clinics.exists():
                raise CommandError(f"unknown clinic {opts['clinic']!r}")
        broken = []
        for clinic in clinics:
            found, count, head = first_break(clinic)
            if found is None:
                self.stdout.write(f"{clinic.slug}: ok, {count} rows, head {head or '-'}")
            else:
                broken.append(clinic.slug)
                self.stdout.write(f"{clinic.slug}: BROKEN at seq {found.seq} (id {found.id}): {found.reason}")
        if broken:
            raise CommandError(f"audit chain broken for: {', '.join(broken)}")
