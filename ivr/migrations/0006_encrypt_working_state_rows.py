"""Data migration (keep when regenerating schema migrations): encrypt the existing plaintext values of the
columns that became encrypted in 0005_field_encryption_working_state (clinics.crypto). Reversible: the reverse decrypts them in place."""

from django.db import migrations

from clinics.crypto import encrypt_rows_operation

# (model, [(field, is JSON)])
COLUMNS = [('callleg', [('candidate_patients', True), ('collected', True), ('answers', True), ('last_twiml', False)])]


class Migration(migrations.Migration):
    dependencies = [("ivr", "0005_field_encryption_working_state")]

    operations = [encrypt_rows_operation("ivr", COLUMNS)]
