"""Field encryption at rest for PHI columns (HIPAA 45 CFR 164.312(a)(2)(iv) and (e)(2)(ii)).

Scheme: AES-256-GCM (`cryptography`'s AEAD), a fresh random 96-bit nonce per stored value. A stored value reads

    enc:v1:<kid>:<base64url(nonce | ciphertext | 16-byte tag)>

`kid` names the key it was encrypted under. The associated data is `enc:v1:<kid>:<app_label>.<model>.<field>`
(e.g. `triage.case.note`): a ciphertext copied into another column, or relabelled with another key id, fails
authentication instead of decrypting there.

Keys come from the environment or a file, never from the database (settings `FIELD_ENCRYPTION_KEYS` and
`FIELD_ENCRYPTION_KEYS_FILE`): comma- (or newline-) separated `kid:base64key` entries, each key 32 bytes.
The first key encrypts every new value; every listed key decrypts. Rotation: put the new key first, run
`manage.py rotate_field_keys` (re-encrypts every value not under the first key), then drop the old key.

An encrypted column cannot be filtered, ordered or compared in SQL (only `isnull` lookups are allowed; any
other lookup raises `FieldError` instead of silently matching nothing). Values are compared in Python after
loading, which every current caller does. This module sits at the lowest layer: it imports only Django and
`cryptography`, so every app may use it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django import forms
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

PREFIX = "enc:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class FieldEncryptionError(Exception):
    """A stored value cannot be decrypted. Messages name the column and key id, never the value."""


class UnknownKeyId(FieldEncryptionError):
    """The value was encrypted under a key id that is not configured."""

    def __init__(self, kid: str, column: str = "") -> None:
        self.kid = kid
        where = f" in {column}" if column else ""
        super().__init__(
            f"field value{where} is encrypted under key id {kid!r}, which is not configured: add it to "
            "FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KEYS_FILE)"
        )


class TamperedValue(FieldEncryptionError):
    """AES-GCM authentication failed: the value was altered, truncated or moved from another column."""


@dataclass(frozen=True)
class Keyring:
    """The configured keys: `current` encrypts, every key in `keys` decrypts."""

    current: str
    keys: dict[str, bytes]


def parse_keys(spec: str) -> Keyring:
    """Parse `kid:base64key[,kid:base64key...]` (commas or newlines; `#` starts a comment line).

    Raises ImproperlyConfigured on an empty spec, a malformed entry, a key that is not 32 bytes, or a
    repeated key id. Error messages never include key material.
    """
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for raw_entry in re.split(r"[,\n]", spec):
        entry = raw_entry.strip()
        if not entry or entry.startswith("#"):
            continue
        kid, sep, b64 = entry.partition(":")
        kid = kid.strip()
        if not sep or not _KID.match(kid):
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS: each entry is kid:base64key, kid of [A-Za-z0-9_.-]")
        try:
            key = base64.b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS: key {kid!r} is not base64") from exc
        if len(key) != KEY_BYTES:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS: key {kid!r} must be {KEY_BYTES} bytes (AES-256)")
        if kid in keys:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS: key id {kid!r} appears twice")
        keys[kid] = key
        order.append(kid)
    if not order:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KEYS_FILE) holds no key")
    return Keyring(current=order[0], keys=keys)


@lru_cache(maxsize=8)
def _keyring_for(spec: str, path: str) -> Keyring:
    if path:
        spec = Path(path).read_text(encoding="utf-8") + ("," + spec if spec else "")
    return parse_keys(spec)


def keyring() -> Keyring:
    """The keyring of the current settings (cached per settings value; a key file is read once per process)."""
    spec = str(getattr(settings, "FIELD_ENCRYPTION_KEYS", "") or "")
    path = str(getattr(settings, "FIELD_ENCRYPTION_KEYS_FILE", "") or "")
    return _keyring_for(spec, path)


def generate_key() -> str:
    """A fresh random key, base64 (url-safe alphabet), for `kid:<this>` in FIELD_ENCRYPTION_KEYS."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _aad(kid: str, column: str) -> bytes:
    return f"{PREFIX}{kid}:{column}".encode()


def is_encrypted(stored: str | None) -> bool:
    """Whether a stored column value has the `enc:v1:` form (says nothing about its validity)."""
    return isinstance(stored, str) and stored.startswith(PREFIX)


def key_id(stored: str) -> str:
    """The key id of a stored value. Raises FieldEncryptionError if it is not an encrypted value."""
    if not is_encrypted(stored):
        raise FieldEncryptionError("not an encrypted field value (expected enc:v1:<kid>:...)")
    kid, sep, _ = stored[len(PREFIX) :].partition(":")
    if not sep:
        raise FieldEncryptionError("malformed encrypted field value (no key id)")
    return kid


def encrypt(plaintext: str, *, column: str, kid: str | None = None) -> str:
    """Encrypt `plaintext` for `column` (`app_label.model.field`) under key `kid` (default: the current key)."""
    ring = keyring()
    kid = kid or ring.current
    if kid not in ring.keys:
        raise UnknownKeyId(kid, column)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(ring.keys[kid]).encrypt(nonce, plaintext.encode("utf-8"), _aad(kid, column))
    return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def decrypt(stored: str, *, column: str) -> str:
    """Decrypt a stored value of `column`. Raises UnknownKeyId, TamperedValue or FieldEncryptionError."""
    kid = key_id(stored)
    ring = keyring()
    if kid not in ring.keys:
        raise UnknownKeyId(kid, column)
    body = stored[len(PREFIX) + len(kid) + 1 :]
    try:
        blob = base64.urlsafe_b64decode(body.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise TamperedValue(f"encrypted value in {column} (key {kid!r}) is not valid base64") from exc
    if len(blob) < NONCE_BYTES + 16:
        raise TamperedValue(f"encrypted value in {column} (key {kid!r}) is truncated")
    try:
        plain = AESGCM(ring.keys[kid]).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(kid, column))
    except InvalidTag as exc:
        raise TamperedValue(
            f"encrypted value in {column} (key {kid!r}) failed authentication: altered, or moved from another column"
        ) from exc
    return plain.decode("utf-8")


if TYPE_CHECKING:  # django-stubs: the Python types a field accepts and returns
    _TextBase = models.TextField[Any, str]
    _AnyBase = models.TextField[Any, Any]
else:
    _TextBase = _AnyBase = models.TextField

# --- Model fields ---------------------------------------------------------------------------------------------

_ALLOWED_LOOKUPS = frozenset({"isnull"})


class EncryptedFieldMixin:
    """Stores the field's value encrypted in a text column; `to_plaintext`/`from_plaintext` map to and from str.

    The column is `text` whatever the Python type (the ciphertext is longer than the plaintext); `max_length`
    is kept for form validation only.
    """

    encrypted = True
    model: type[models.Model]
    name: str
    null: bool

    @property
    def column_label(self) -> str:
        return f"{self.model._meta.label_lower}.{self.name}"

    def to_plaintext(self, value: Any) -> str:
        return str(value)

    def from_plaintext(self, text: str) -> Any:
        return text

    def get_internal_type(self) -> str:
        return "TextField"

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in _ALLOWED_LOOKUPS:
            raise FieldError(
                f"{self.column_label} is encrypted at rest: it cannot be queried with '{lookup_name}' "
                "(compare in Python after loading)"
            )
        return super().get_lookup(lookup_name)  # type: ignore[misc]

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(f"{self.column_label} is encrypted at rest: no '{lookup_name}' transform")

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        return encrypt(self.to_plaintext(value), column=self.column_label)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        return self.from_plaintext(decrypt(value, column=self.column_label))


class EncryptedTextField(EncryptedFieldMixin, _TextBase):
    """Text (or a short string such as a phone number) encrypted at rest."""

    def formfield(self, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.max_length is not None:
            kwargs.setdefault("widget", forms.TextInput)
        return super().formfield(**kwargs)

    def to_python(self, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)


class EncryptedDateField(EncryptedFieldMixin, _AnyBase):
    """A `datetime.date` encrypted at rest (stored as ISO 8601 before encryption)."""

    _pyi_private_set_type: Any  # date, ISO str or None; django-stubs: what a model attribute accepts
    _pyi_private_get_type: Any

    def to_plaintext(self, value: Any) -> str:
        return self.to_python(value).isoformat()  # type: ignore[no-any-return]

    def from_plaintext(self, text: str) -> Any:
        return datetime.date.fromisoformat(text[:10])

    def to_python(self, value: Any) -> Any:
        if value is None or (isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)):
            return value
        if isinstance(value, datetime.datetime):
            return value.date()
        return datetime.date.fromisoformat(str(value)[:10])

    def formfield(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return forms.DateField(required=not self.blank, **kwargs)


class EncryptedJSONField(EncryptedFieldMixin, _AnyBase):
    """JSON (lists, dicts, scalars) encrypted at rest; encoded with DjangoJSONEncoder (dates, UUIDs, decimals)."""

    _pyi_private_set_type: Any  # django-stubs: what a model attribute accepts
    _pyi_private_get_type: Any

    def to_plaintext(self, value: Any) -> str:
        return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))

    def from_plaintext(self, text: str) -> Any:
        return json.loads(text)

    def to_python(self, value: Any) -> Any:
        return value

    def value_to_string(self, obj: models.Model) -> Any:
        return self.value_from_object(obj)

    def formfield(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return forms.JSONField(encoder=DjangoJSONEncoder, required=not self.blank, **kwargs)


def encrypted_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The encrypted concrete fields of a model."""
    return [f for f in model._meta.concrete_fields if getattr(f, "encrypted", False)]


# --- Raw column helpers for data migrations and rotation -------------------------------------------------------


def seal_plain_column(stored: str | None, *, column: str, as_json: bool = False) -> str | None:
    """Encrypt a legacy plaintext column value (a data migration's step); an already sealed value is kept."""
    if stored is None or is_encrypted(stored):
        return stored
    if as_json:
        stored = json.dumps(json.loads(stored), separators=(",", ":"))
    return encrypt(stored, column=column)


def migrate_columns(
    connection: Any, *, table: str, pk: str, columns: Iterable[tuple[str, str, bool]], forward: bool
) -> int:
    """Encrypt (`forward`) or decrypt every value of `columns` in `table`, in place, with raw SQL.

    `columns` holds (db column, `app_label.model.field` label, is JSON). Used by the data migrations that
    encrypt existing rows (and decrypt them on a reverse migration). Returns the number of values changed.
    """
    qn = connection.ops.quote_name
    changed = 0
    cols = list(columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {qn(pk)}, {', '.join(qn(c) for c, _, _ in cols)} FROM {qn(table)}")
        rows = cursor.fetchall()
        for row in rows:
            for (col, label, as_json), stored in zip(cols, row[1:], strict=True):
                if stored is None:
                    continue
                if forward:
                    new = seal_plain_column(str(stored), column=label, as_json=as_json)
                else:
                    new = decrypt(stored, column=label) if is_encrypted(stored) else stored
                if new != stored:
                    cursor.execute(f"UPDATE {qn(table)} SET {qn(col)} = %s WHERE {qn(pk)} = %s", [new, row[0]])
                    changed += 1
    return changed


def encrypt_rows_operation(app_label: str, columns: list[tuple[str, list[tuple[str, bool]]]]) -> Any:
    """The data-migration operation that encrypts the existing plaintext values of `columns` in place (and
    decrypts them on reverse): `columns` is `[(model name, [(field name, is JSON), ...]), ...]` of `app_label`,
    read from the migration's historical models. Every "encrypt existing rows" migration is this one call."""
    from django.db import migrations  # migrations machinery only where a migration asks for it

    def run(apps: Any, schema_editor: Any, *, forward: bool) -> None:
        for model_name, fields in columns:
            model = apps.get_model(app_label, model_name)
            migrate_columns(
                schema_editor.connection,
                table=model._meta.db_table,
                pk=model._meta.pk.column,
                columns=[(model._meta.get_field(f).column, f"{model._meta.label_lower}.{f}", js) for f, js in fields],
                forward=forward,
            )

    def encrypt_rows(apps: Any, schema_editor: Any) -> None:
        run(apps, schema_editor, forward=True)

    def decrypt_rows(apps: Any, schema_editor: Any) -> None:
        run(apps, schema_editor, forward=False)

    return migrations.RunPython(encrypt_rows, decrypt_rows)
