"""Data migration: every existing clinic gets its default queue "General" (new clinics get it on first use,
`triage.services.queue_default_for`), and queued cases without a queue are put in it."""

from django.db import migrations


def create_default_queues(apps, schema_editor):
    Clinic = apps.get_model("clinics", "Clinic")
    Queue = apps.get_model("triage", "Queue")
    Case = apps.get_model("triage", "Case")
    for clinic in Clinic.objects.all():
        queue = Queue.objects.filter(clinic=clinic, is_default=True).first()
        if queue is None:
            queue, _ = Queue.objects.get_or_create(
                clinic=clinic, slug="general", defaults={"name": "General", "is_default": True}
            )
        Case.objects.filter(clinic=clinic, queue__isnull=True).update(queue=queue)


class Migration(migrations.Migration):
    dependencies = [("triage", "0002_issue3"), ("clinics", "0003_kpi_targets_from_acuity_targets")]

    operations = [migrations.RunPython(create_default_queues, migrations.RunPython.noop)]
