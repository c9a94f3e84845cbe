"""Data migration (keep when regenerating schema migrations): encrypt the existing plaintext values of the
columns that became encrypted in 0004_field_encryption (clinics.crypto). Reversible: the reverse decrypts them in place."""

from django.db import migrations

from clinics.crypto import encrypt_rows_operation

# (model, [(field, is JSON)])
COLUMNS = [('writeback', [('payload', True)]), ('hl7message', [('raw', False)]), ('patientlink', [('family_name', False), ('given_name', False), ('birth_date', False), ('phones', True)])]


class Migration(migrations.Migration):
    dependencies = [("ehr", "0004_field_encryption")]

    operations = [encrypt_rows_operation("ehr", COLUMNS)]
