"""Secure chat and store-and-forward attachments of a video visit (both work without video).

Messages and files are encrypted at rest (`clinics.crypto` fields on `VisitMessage` / `VisitAttachment`).
Attachments: JPEG, PNG or WebP images and PDF documents up to `VIDEO_ATTACHMENT_MAX_BYTES` (default 5 MB).
Images are decoded with Pillow, turned upright (EXIF orientation), and re-encoded from their pixels alone
(JPEG quality 85, or PNG for PNG input), which drops EXIF (GPS position, device, time), XMP, ICC and text
chunks; images over `MAX_PIXELS` are refused before decoding (decompression bombs). PDFs are checked by
their `%PDF-` signature and stored as sent (their metadata is not stripped). Anything else is refused.
Every new message or attachment is announced to the visit's room after commit (`{"type": "chat"}` /
`{"type": "attachment"}`, no file content), and the nurse's read of a file is audited. Both tables are behind
row-level security (each row carries the visit's `clinic`): callers run in the visit's clinic scope
(`contactcenter.visits.participant_scope`, the signaling socket's `clinic_scope`, or a staff request's).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from PIL import Image, ImageOps, UnidentifiedImageError

from clinics.services import audit_record
from contactcenter.models import VideoVisit, VisitAttachment, VisitMessage
from contactcenter.visits import room_group
from triage.selectors import access_case

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
MAX_PIXELS = 40_000_000
IMAGE_FORMATS = {"JPEG": ("image/jpeg", "JPEG"), "PNG": ("image/png", "PNG"), "WEBP": ("image/jpeg", "JPEG")}


class AttachmentRefused(Exception):
    """The upload is of a refused type or too large; `status` is the HTTP status to answer (400 / 413)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class EmptyMessage(ValueError):
    """A chat message with no text."""


def _announce(visit: VideoVisit, data: dict[str, Any]) -> None:
    room = str(visit.room)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(room_group(room), {"type": "visit.relay", "sender": "", "data": data})
        except Exception:  # noqa: BLE001 - pages resynchronise from the history on reconnect
            logger.warning("chat event of visit %s not delivered", visit.pk, exc_info=True)

    transaction.on_commit(send)


def message_json(message: VisitMessage) -> dict[str, Any]:
    return {
        "type": "chat",
        "id": message.pk,
        "role": message.role,
        "body": message.body,
        "at": message.created_at.isoformat(),
    }


def attachment_json(attachment: VisitAttachment) -> dict[str, Any]:
    return {
        "type": "attachment",
        "id": attachment.pk,
        "role": attachment.role,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "at": attachment.created_at.isoformat(),
        "case_id": attachment.visit.case_id,
    }


@transaction.atomic
def chat_post(*, visit: VideoVisit, role: str, author: User | AnonymousUser | None, body: str) -> VisitMessage:
    """Store one chat message of `role` (first `MAX_MESSAGE_CHARS` characters, trimmed) and announce it to the
    room after commit. Raises EmptyMessage for blank text. The caller has checked the participant."""
    text = body.strip()[:MAX_MESSAGE_CHARS]
    if not text:
        raise EmptyMessage
    message = VisitMessage.objects.create(
        visit=visit,
        clinic_id=visit.clinic_id,
        role=role,
        author=author if author is not None and author.is_authenticated else None,
        body=text,
    )
    _announce(visit, message_json(message))
    return message


def _clean_image(data: bytes) -> tuple[bytes, str]:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            width, height = probe.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise AttachmentRefused("Send a photo (JPEG, PNG) or a PDF document.") from exc
    if fmt not in IMAGE_FORMATS:
        raise AttachmentRefused("Send a photo (JPEG, PNG) or a PDF document.")
    if width * height > MAX_PIXELS:
        raise AttachmentRefused("This picture is too large; send a smaller one.", status=413)
    content_type, out_format = IMAGE_FORMATS[fmt]
    try:
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)
            mode = "RGB" if out_format == "JPEG" else ("RGBA" if upright.mode in ("RGBA", "LA", "P") else "RGB")
            pixels = upright.convert(mode)
            clean = Image.frombytes(mode, pixels.size, pixels.tobytes())  # pixels only: no info, EXIF, ICC
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AttachmentRefused("This picture could not be read.") from exc
    out = io.BytesIO()
    if out_format == "JPEG":
        clean.save(out, "JPEG", quality=85, optimize=True)
    else:
        clean.save(out, "PNG", optimize=True)
    return out.getvalue(), content_type


@transaction.atomic
def attachment_store(*, visit: VideoVisit, role: str, filename: str, data: bytes) -> VisitAttachment:
    """Check, clean and store one upload (rules in the module docstring); announce it to the room.

    Raises AttachmentRefused (status 400 for a refused type, 413 when over `VIDEO_ATTACHMENT_MAX_BYTES`).
    """
    if len(data) > int(settings.VIDEO_ATTACHMENT_MAX_BYTES):
        raise AttachmentRefused("This file is too large.", status=413)
    if data.startswith(b"%PDF-"):
        stored, content_type = data, "application/pdf"
    else:
        stored, content_type = _clean_image(data)
    name = (filename or "attachment").replace("/", "_").replace("\\", "_").strip()[:200] or "attachment"
    attachment = VisitAttachment.objects.create(  # type: ignore[misc]  # django-stubs: a TextField holds str
        visit=visit,
        clinic_id=visit.clinic_id,
        role=role,
        content_type=content_type,
        size=len(stored),
        filename=name,
        data=stored,
    )
    _announce(visit, attachment_json(attachment))
    return attachment


def visit_history(*, visit: VideoVisit) -> list[dict[str, Any]]:
    """The visit's chat messages and attachments (metadata only), oldest first, as the pages show them."""
    items = [message_json(m) for m in visit.messages.all()]
    items += [attachment_json(a) for a in visit.attachments.defer("data").select_related("visit")]
    return sorted(items, key=lambda item: (item["at"], item["type"], item["id"]))


def attachment_read(*, user: User, case_id: int, attachment_id: int, source_ip: str | None = None) -> VisitAttachment:
    """A nurse reads (downloads) an attachment of a case of her clinic; audited `attachment.read`.

    Raises NotStaff, Case.DoesNotExist (another clinic's case: 404, audited by `access_case`),
    VisitAttachment.DoesNotExist.
    """
    case = access_case(user=user, case_id=case_id)
    attachment = VisitAttachment.objects.select_related("visit").get(pk=attachment_id, visit__case=case)
    audit_record(
        clinic=case.clinic,
        actor=user,
        action="attachment.read",
        object_type="visit_attachment",
        object_id=attachment.pk,
        patient_ref=case.patient_fhir_id,
        source_ip=source_ip,
    )
    return attachment
