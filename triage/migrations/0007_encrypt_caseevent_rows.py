"""Data migration (keep when regenerating schema migrations): encrypt the existing plaintext values of the
columns that became encrypted in 0006_field_encryption_working_state (clinics.crypto). Reversible: the reverse decrypts them in place."""

from django.db import migrations

from clinics.crypto import encrypt_rows_operation

# (model, [(field, is JSON)])
COLUMNS = [('caseevent', [('summary', False), ('detail', True)])]


class Migration(migrations.Migration):
    dependencies = [("triage", "0006_field_encryption_working_state")]

    operations = [encrypt_rows_operation("triage", COLUMNS)]
