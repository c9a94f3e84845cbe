"""Chat and store-and-forward attachments of a video visit (`contactcenter.visit_chat`, the upload, history
and download views): type and size limits, images re-encoded without metadata, encryption at rest, access."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from PIL import Image, PngImagePlugin

from clinics.models import AuditEvent
from contactcenter import services, visit_chat
from contactcenter.models import VideoVisit, VisitAttachment, VisitMessage
from ivr.models import OutboundMessage

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def visit_and_clients(personas, make_case):
    """(visit, alice's client, the patient's client that redeemed the link)."""
    case = make_case(personas.north, acuity=3)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    alice = logged_in(personas.alice)
    alice.post(f"/console/cases/{case.pk}/video/")
    path = re.search(r"(/visit/join/[^/\s]+/)", OutboundMessage.objects.get(case=case).body).group(1)
    patient = Client()
    assert patient.post(path).status_code == 302
    return VideoVisit.objects.get(case=case), alice, patient


def jpeg_with_exif() -> bytes:
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0132] = "2026:11:21 03:14:15"  # DateTime
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (45.0, 30.0, 15.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    assert b"SecretCam" in out.getvalue()
    return out.getvalue()


def upload(client: Client, visit, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post(
        f"/visit/{visit.room}/attachments/", {"file": SimpleUploadedFile(name, data, content_type=content_type)}
    )


def test_photo_is_re_encoded_upright_without_exif_and_encrypted_at_rest(visit_and_clients):
    visit, alice, patient = visit_and_clients
    response = upload(patient, visit, "IMG_0001 rash.jpg", jpeg_with_exif(), "image/jpeg")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (
        body["role"] == "patient" and body["content_type"] == "image/jpeg" and body["filename"] == "IMG_0001 rash.jpg"
    )
    stored = VisitAttachment.objects.get(pk=body["id"])
    assert b"SecretCam" not in stored.data and b"Exif" not in stored.data
    with Image.open(io.BytesIO(stored.data)) as image:
        assert image.format == "JPEG" and image.size == (20, 40)  # orientation applied, then dropped
        assert dict(image.getexif()) == {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT filename, data FROM contactcenter_visitattachment WHERE id = %s", [stored.pk])
        filename, data = cursor.fetchone()
    assert filename.startswith("enc:v1:") and "rash" not in filename and data.startswith("enc:v1:")


def test_png_text_chunks_are_dropped_and_pdf_kept(visit_and_clients):
    visit, _, patient = visit_and_clients
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient home address")
    out = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 255, 128)).save(out, "PNG", pnginfo=info)
    png = upload(patient, visit, "a.png", out.getvalue(), "image/png").json()
    stored = VisitAttachment.objects.get(pk=png["id"])
    assert png["content_type"] == "image/png" and b"home address" not in stored.data
    with Image.open(io.BytesIO(stored.data)) as image:
        assert image.mode == "RGBA" and image.getpixel((0, 0)) == (0, 0, 255, 128)
    pdf = upload(patient, visit, "discharge.pdf", PDF, "application/pdf").json()
    assert pdf["content_type"] == "application/pdf" and VisitAttachment.objects.get(pk=pdf["id"]).data == PDF


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("x.html", b"<html><script>alert(1)</script></html>"),
        ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("x.exe", b"MZ\x90\x00\x03" + b"\x00" * 100),
        ("x.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        ("x.jpg", b"\xff\xd8\xff\xe0 truncated"),
    ],
)
def test_other_types_are_refused(visit_and_clients, name, data):
    visit, _, patient = visit_and_clients
    response = upload(patient, visit, name, data, "image/jpeg")
    assert response.status_code == 400 and "error" in response.json()
    assert not VisitAttachment.objects.exists()


def test_size_limits(visit_and_clients, settings):
    visit, _, patient = visit_and_clients
    settings.VIDEO_ATTACHMENT_MAX_BYTES = 1000
    assert upload(patient, visit, "big.pdf", PDF + b"0" * 1000).status_code == 413
    assert upload(patient, visit, "nothing", b"").status_code == 400
    assert patient.post(f"/visit/{visit.room}/attachments/").status_code == 400  # no file part
    settings.VIDEO_ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024
    out = io.BytesIO()
    Image.new("L", (9000, 5000)).save(out, "PNG")  # 45 Mpx, small file: refused before decoding
    assert upload(patient, visit, "bomb.png", out.getvalue()).status_code == 413
    assert not VisitAttachment.objects.exists()


def test_only_participants_upload_or_read_history(personas, visit_and_clients):
    visit, alice, patient = visit_and_clients
    visit_chat.chat_post(visit=visit, role="patient", author=None, body="  It itches a lot.  ")
    upload(patient, visit, "a.pdf", PDF)
    for outsider in (Client(), logged_in(personas.dave), logged_in(personas.carol)):
        assert upload(outsider, visit, "a.pdf", PDF).status_code == 403
        assert outsider.get(f"/visit/{visit.room}/history/").status_code == 403
    for participant in (alice, patient):
        items = participant.get(f"/visit/{visit.room}/history/").json()["items"]
        assert [(i["type"], i["role"]) for i in items] == [("chat", "patient"), ("attachment", "patient")]
        assert items[0]["body"] == "It itches a lot." and "data" not in items[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM contactcenter_visitmessage")
        (raw,) = cursor.fetchone()
    assert raw.startswith("enc:v1:") and "itches" not in raw
    with pytest.raises(visit_chat.EmptyMessage):
        visit_chat.chat_post(visit=visit, role="nurse", author=personas.alice, body="   ")


def test_nurse_sees_the_files_on_the_case_and_downloads_are_audited(personas, visit_and_clients):
    visit, alice, patient = visit_and_clients
    attachment_id = upload(patient, visit, "rash.jpg", jpeg_with_exif(), "image/jpeg").json()["id"]
    visit_chat.chat_post(visit=visit, role="patient", author=None, body="Photo of the rash")
    page = alice.get(f"/console/cases/{visit.case_id}/").content.decode()
    url = f"/console/cases/{visit.case_id}/attachments/{attachment_id}/"
    assert url in page and "Photo of the rash" in page
    response = alice.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert (
        response["Content-Disposition"].startswith("attachment;") and "sandbox" in response["Content-Security-Policy"]
    )
    assert response.content == VisitAttachment.objects.get(pk=attachment_id).data
    assert AuditEvent.objects.filter(
        action="attachment.read", object_id=str(attachment_id), actor=personas.alice
    ).exists()
    assert logged_in(personas.carol).get(url).status_code == 404
    assert alice.get(f"/console/cases/{visit.case_id + 1}/attachments/{attachment_id}/").status_code == 404
    assert patient.get(url).status_code == 302  # the patient has no console access
    assert VisitMessage.objects.count() == 1
