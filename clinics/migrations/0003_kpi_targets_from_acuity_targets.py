"""Data migration: existing clinics keep their configured target times.

`Clinic.target_seconds` now reads `kpi_targets[level]["seconds"]` first; copy each clinic's `acuity_targets`
into it so a clinic that had changed its targets keeps them (fractions stay at the CTAS defaults).
"""

from django.db import migrations


def copy_targets(apps, schema_editor):
    Clinic = apps.get_model("clinics", "Clinic")
    for clinic in Clinic.objects.all():
        kpi = dict(clinic.kpi_targets or {})
        for level, seconds in (clinic.acuity_targets or {}).items():
            target = dict(kpi.get(str(level)) or {"fraction": 0.8})
            target["seconds"] = int(seconds)
            kpi[str(level)] = target
        clinic.kpi_targets = kpi
        clinic.save(update_fields=["kpi_targets"])


class Migration(migrations.Migration):
    dependencies = [("clinics", "0002_issue3")]

    operations = [migrations.RunPython(copy_targets, migrations.RunPython.noop)]
