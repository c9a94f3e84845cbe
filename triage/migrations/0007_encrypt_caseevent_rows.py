"""Data migration (keep when regenerating schema migrations): encrypt the existing plaintext values of the
columns that became encrypted in 0006_field_encryption_working_state (clinics.crypto). Reversible: the reverse decrypts them in place."""

from django.db import migrations

from clinics.crypto import migrate_columns

# (model, [(field, is JSON)])
COLUMNS = [('caseevent', [('summary', False), ('detail', True)])]


def _run(apps, schema_editor, forward):
    for model_name, fields in COLUMNS:
        model = apps.get_model("triage", model_name)
        migrate_columns(
            schema_editor.connection,
            table=model._meta.db_table,
            pk=model._meta.pk.column,
            columns=[(model._meta.get_field(f).column, f"{model._meta.label_lower}.{f}", js) for f, js in fields],
            forward=forward,
        )


def encrypt_rows(apps, schema_editor):
    _run(apps, schema_editor, forward=True)


def decrypt_rows(apps, schema_editor):
    _run(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [("triage", "0006_field_encryption_working_state")]

    operations = [migrations.RunPython(encrypt_rows, decrypt_rows)]
