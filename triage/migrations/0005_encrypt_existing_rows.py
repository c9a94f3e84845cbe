"""Data migration (keep when regenerating schema migrations): encrypt the existing plaintext values of the
columns that became encrypted in 0004_field_encryption (clinics.crypto). Reversible: the reverse decrypts them in place."""

from django.db import migrations

from clinics.crypto import encrypt_rows_operation

# (model, [(field, is JSON)])
COLUMNS = [('case', [('patient_display', False), ('patient_birth_date', False), ('callback_number', False), ('answers', True), ('note', False)])]


class Migration(migrations.Migration):
    dependencies = [("triage", "0004_field_encryption")]

    operations = [encrypt_rows_operation("triage", COLUMNS)]
