"""Data migration (keep when regenerating schema migrations): chain the audit rows written before the chain
existed. Per clinic, in (at, id) order: seq 1, 2, 3 ..., prev_hash, hash (clinics.models.audit_hash). Runs
before the append-only trigger (0008) exists, so it may UPDATE."""

from django.db import migrations

from clinics.models import AUDIT_GENESIS_HASH, AUDIT_HASHED_FIELDS, audit_hash


def backfill(apps, schema_editor):
    AuditEvent = apps.get_model("clinics", "AuditEvent")
    clinic_ids = AuditEvent.objects.filter(seq__isnull=True).values_list("clinic_id", flat=True).distinct()
    for clinic_id in list(clinic_ids):
        prev_hash = AUDIT_GENESIS_HASH
        for seq, event in enumerate(AuditEvent.objects.filter(clinic_id=clinic_id).order_by("at", "pk"), 1):
            event.seq = seq
            event.prev_hash = prev_hash
            event.hash = audit_hash(
                values={name: getattr(event, name) for name in AUDIT_HASHED_FIELDS}, prev_hash=prev_hash
            )
            AuditEvent.objects.filter(pk=event.pk).update(seq=seq, prev_hash=prev_hash, hash=event.hash)
            prev_hash = event.hash


class Migration(migrations.Migration):
    dependencies = [("clinics", "0006_audit_chain")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
