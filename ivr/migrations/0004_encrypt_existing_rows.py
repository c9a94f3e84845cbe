"""Data migration (keep when regenerating schema migrations): encrypt the existing plaintext values of the
columns that became encrypted in 0003_field_encryption (clinics.crypto). Reversible: the reverse decrypts them in place."""

from django.db import migrations

from clinics.crypto import encrypt_rows_operation

# (model, [(field, is JSON)])
COLUMNS = [('callleg', [('from_number', False)]), ('outboundmessage', [('to', False), ('body', False)])]


class Migration(migrations.Migration):
    dependencies = [("ivr", "0003_field_encryption")]

    operations = [encrypt_rows_operation("ivr", COLUMNS)]
