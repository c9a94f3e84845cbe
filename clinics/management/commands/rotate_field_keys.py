"""`manage.py rotate_field_keys [--dry-run] [--batch-size N]`: re-encrypt field values to the newest key.

Rotation procedure (README "Encryption at rest"): put the new key first in FIELD_ENCRYPTION_KEYS (keep the old
ones after it), deploy, run this command until it reports 0 to re-encrypt, then remove the old keys.

Every encrypted column of every installed model (`clinics.crypto.encrypted_fields`) is read in primary-key
batches with raw SQL; a value not under the current key is decrypted (its own key id, its own column's
associated data) and encrypted under the current key. The write is a compare-and-set (`UPDATE ... WHERE pk =
%s AND col = <the value read>`), so a value the application rewrote in between is left alone (it is already
under the current key). Idempotent: a second run finds nothing to do. A value under an unknown key id or that
fails authentication stops the command with the error naming the column and key id (never the value).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from clinics.crypto import FieldEncryptionError, decrypt, encrypt, encrypted_fields, is_encrypted, key_id, keyring
from clinics.db_scope import system_scoped


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field value that is not under the newest key (FIELD_ENCRYPTION_KEYS[0])."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
        parser.add_argument("--batch-size", type=int, default=500, help="rows per batch and transaction")

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        batch: int = max(1, options["batch_size"])
        current = keyring().current
        qn = connection.ops.quote_name
        total = 0
        for model in apps.get_models():
            fields = encrypted_fields(model)
            if not fields:
                continue
            table, pk = model._meta.db_table, model._meta.pk.column
            counts: dict[str, Counter[str]] = {f.name: Counter() for f in fields}
            last: Any = None
            while True:
                with transaction.atomic(), connection.cursor() as cursor:
                    where = f"WHERE {qn(pk)} > %s " if last is not None else ""
                    cursor.execute(
                        f"SELECT {qn(pk)}, {', '.join(qn(f.column) for f in fields)} FROM {qn(table)} "
                        f"{where}ORDER BY {qn(pk)} LIMIT %s",
                        ([last] if last is not None else []) + [batch],
                    )
                    rows = cursor.fetchall()
                    for row in rows:
                        for field, stored in zip(fields, row[1:], strict=True):
                            counts[field.name][
                                self._rotate(cursor, model, field, row[0], stored, current, dry_run)
                            ] += 1
                if len(rows) < batch:
                    break
                last = rows[-1][0]
            for field in fields:
                c = counts[field.name]
                total += c["rotated"]
                verb = "to re-encrypt" if dry_run else "re-encrypted"
                self.stdout.write(
                    f"{model._meta.label}.{field.name}: {c['rotated']} {verb}, {c['current']} already under "
                    f"{current!r}, {c['null']} null, {c['changed']} changed meanwhile (rerun)"
                )
        self.stdout.write(f"total {'to re-encrypt' if dry_run else 're-encrypted'}: {total}")

    def _rotate(self, cursor: Any, model: Any, field: Any, pk: Any, stored: Any, current: str, dry_run: bool) -> str:
        if stored is None:
            return "null"
        column = field.column_label
        if not is_encrypted(stored):
            raise CommandError(f"{column} (pk {pk}) holds a value that is not encrypted; run the migrations first")
        try:
            if key_id(stored) == current:
                return "current"
            plain = decrypt(stored, column=column)
        except FieldEncryptionError as exc:
            raise CommandError(f"{column} (pk {pk}): {exc}") from exc
        if dry_run:
            return "rotated"
        qn = connection.ops.quote_name
        cursor.execute(
            f"UPDATE {qn(model._meta.db_table)} SET {qn(field.column)} = %s "
            f"WHERE {qn(model._meta.pk.column)} = %s AND {qn(field.column)} = %s",
            [encrypt(plain, column=column), pk, stored],
        )
        return "rotated" if cursor.rowcount == 1 else "changed"
