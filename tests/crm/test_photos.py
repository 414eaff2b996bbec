"""Photos: the type is what the bytes are, size and decoding are checked, EXIF position and time
are read, files are stored under random names and served only to those who see the merchant."""

import datetime
import io
import struct
import zlib
import zoneinfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import ExifTags, Image

from crm.models import ActivityPhoto
from crm.services.activities import activity_log

PHOTOS = "/api/v1/photos/"
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def image_bytes(fmt="JPEG", size=(64, 48), gps=None, taken="2025:03:04 10:20:30") -> bytes:
    """An image made with Pillow; ``gps`` = ((deg, min, sec), ref_lat, (deg, min, sec), ref_lon)."""
    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    if taken:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    if gps:
        lat, lat_ref, lon, lon_ref = gps
        ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        ifd[ExifTags.GPS.GPSLatitudeRef] = lat_ref
        ifd[ExifTags.GPS.GPSLatitude] = lat
        ifd[ExifTags.GPS.GPSLongitudeRef] = lon_ref
        ifd[ExifTags.GPS.GPSLongitude] = lon
    buf = io.BytesIO()
    if fmt in ("JPEG", "PNG", "WEBP"):
        img.save(buf, fmt, exif=exif)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def upload(client, activity, content: bytes, name="门头.jpg", content_type="image/jpeg", kind="storefront"):
    file = SimpleUploadedFile(name, content, content_type=content_type)
    return client.post(PHOTOS, {"activity": activity.pk, "kind": kind, "file": file}, format="multipart")


@pytest.fixture
def a_visit(world, merchants):
    return activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"])


HANGZHOU_GPS = ((30.0, 12.0, 36.0), "N", (120.0, 9.0, 18.0), "E")  # 30.21°N 120.155°E


def test_upload_reads_exif_and_stores_under_a_random_name(world, a_visit, api_as, media_root):
    response = upload(api_as(world.am_a), a_visit, image_bytes(gps=HANGZHOU_GPS), name="13812345678张三.jpg")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["content_type"] == "image/jpeg" and body["kind"] == "storefront"
    assert body["merchant"]["id"] == a_visit.merchant_id
    lon, lat = body["exif_location"]["coordinates"]
    assert lat == pytest.approx(30.21) and lon == pytest.approx(120.155)
    taken = datetime.datetime.fromisoformat(body["exif_taken_at"])
    assert taken == datetime.datetime(2025, 3, 4, 10, 20, 30, tzinfo=SHANGHAI)
    photo = ActivityPhoto.objects.get(pk=body["id"])
    assert photo.file.name.startswith("photos/") and photo.file.name.endswith(".jpg")
    assert "13812345678" not in photo.file.name and "张三" not in photo.file.name
    assert (media_root / photo.file.name).exists()
    assert "file_url" in body and "/media/" not in body["file_url"] and photo.file.name not in str(body)


def test_exif_outside_china_or_missing_is_no_position(world, a_visit, api_as):
    client = api_as(world.am_a)
    paris = ((48.0, 51.0, 0.0), "N", (2.0, 21.0, 0.0), "E")
    body = upload(client, a_visit, image_bytes(gps=paris)).json()
    assert body["exif_location"] is None
    body = upload(client, a_visit, image_bytes(gps=None, taken=None)).json()
    assert body["exif_location"] is None and body["exif_taken_at"] is None
    body = upload(client, a_visit, image_bytes(taken="not a date")).json()
    assert body["exif_taken_at"] is None


def test_png_and_webp_are_accepted_with_their_sniffed_type(world, a_visit, api_as):
    client = api_as(world.am_a)
    body = upload(client, a_visit, image_bytes("PNG"), name="x.jpg", content_type="image/jpeg").json()
    assert body["content_type"] == "image/png"
    assert ActivityPhoto.objects.get(pk=body["id"]).file.name.endswith(".png")
    body = upload(client, a_visit, image_bytes("WEBP"), name="x.webp", content_type="image/webp").json()
    assert body["content_type"] == "image/webp"


@pytest.mark.parametrize(
    ("content", "name", "content_type"),
    [
        (b"just some text, not a picture\n" * 10, "note.jpg", "image/jpeg"),  # a .txt renamed .jpg
        (image_bytes("GIF"), "anim.jpg", "image/jpeg"),  # a real image of a type we do not take
        (image_bytes("BMP"), "x.png", "image/png"),
        (image_bytes()[:300], "cut.jpg", "image/jpeg"),  # truncated: does not decode
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "scan.jpg", "image/jpeg"),
    ],
)
def test_wrong_or_broken_files_are_a_400_naming_file(world, a_visit, api_as, media_root, content, name, content_type):
    response = upload(api_as(world.am_a), a_visit, content, name=name, content_type=content_type)
    assert response.status_code == 400, response.content
    assert "file" in response.json()
    assert not ActivityPhoto.objects.exists()
    assert not list(media_root.rglob("*.*"))


def test_oversized_file_is_a_400(world, a_visit, api_as, settings, media_root):
    content = image_bytes(size=(400, 400))
    settings.PHOTO_MAX_BYTES = len(content) - 1
    response = upload(api_as(world.am_a), a_visit, content)
    assert response.status_code == 400 and "file" in response.json()
    settings.PHOTO_MAX_BYTES = len(content)
    assert upload(api_as(world.am_a), a_visit, content).status_code == 201


def test_empty_or_missing_file_is_a_400(world, a_visit, api_as):
    client = api_as(world.am_a)
    response = upload(client, a_visit, b"")
    assert response.status_code == 400 and "file" in response.json()
    response = client.post(PHOTOS, {"activity": a_visit.pk}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a ``width`` x ``height`` canvas (IHDR patched, CRC fixed)."""
    data = bytearray(image_bytes("PNG", size=(8, 8), taken=None))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_decompression_bomb_is_refused(world, a_visit, api_as):
    # A small file that claims a huge canvas: refused before decoding.
    bomb = png_claiming(30000, 30000)
    response = upload(api_as(world.am_a), a_visit, bomb, name="x.png", content_type="image/png")
    assert response.status_code == 400 and "file" in response.json()


def test_upload_to_a_foreign_or_read_only_activity_is_refused(world, merchants, api_as):
    foreign = activity_log(by=world.admin, kind="visit", merchant=merchants["grid_b"])
    response = upload(api_as(world.am_a), foreign, image_bytes())
    assert response.status_code == 400 and "activity" in response.json()
    mine = activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"])
    response = upload(api_as(world.mid_office), mine, image_bytes())
    assert response.status_code == 400 and "activity" in response.json()
    assert not ActivityPhoto.objects.exists()


def test_no_photos_on_events(world, merchants, api_as):
    event = activity_log(by=world.am_a, kind="event", grid=world.grid_a, title="沙龙", attendees=[merchants["grid_a"]])
    response = upload(api_as(world.am_a), event, image_bytes())
    assert response.status_code == 400 and "activity" in response.json()


def test_photo_is_served_only_in_scope(world, a_visit, api_as):
    content = image_bytes(gps=HANGZHOU_GPS)
    body = upload(api_as(world.am_a), a_visit, content).json()
    url = reverse("api:photo-file", args=[body["id"]])
    response = api_as(world.am_a).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"].startswith("inline")
    assert b"".join(response.streaming_content) == content
    assert api_as(world.regional_head).get(url).status_code == 200
    for who in (world.am_c, world.nobody, world.former_am_a):
        assert api_as(who).get(url).status_code == 404
        assert api_as(who).get(reverse("api:photo-detail", args=[body["id"]])).status_code == 404
    assert api_as(None).get(url).status_code in (401, 403)


def test_photo_follows_the_merchant_when_it_moves(world, a_visit, api_as):
    body = upload(api_as(world.am_a), a_visit, image_bytes()).json()
    merchant = a_visit.merchant
    merchant.grid = world.grid_c
    merchant.save()
    url = reverse("api:photo-file", args=[body["id"]])
    assert api_as(world.am_a).get(url).status_code == 404
    assert api_as(world.am_c).get(url).status_code == 200


def test_multipart_only_on_the_upload(world, a_visit, merchants, api_as):
    client = api_as(world.am_a)
    # JSON to the upload is refused (415) ...
    assert client.post(PHOTOS, {"activity": a_visit.pk, "kind": "storefront"}, format="json").status_code == 415
    # ... and multipart everywhere else still is.
    file = SimpleUploadedFile("a.jpg", image_bytes(), content_type="image/jpeg")
    for url, data in (
        ("/api/v1/activities/", {"kind": "call", "merchant_id": merchants["grid_a"].pk, "file": file}),
        ("/api/v1/leads/", {"merchant_id": merchants["grid_a"].pk, "product": "loan"}),
        (reverse("api:activity-checkout", args=[a_visit.pk]), {}),
        ("/api/v1/merchants/", {"name": "x"}),
    ):
        assert client.post(url, data, format="multipart").status_code == 415, url
    assert not ActivityPhoto.objects.exists()


def test_photo_list_filters(world, merchants, a_visit, api_as):
    other = activity_log(by=world.am_a, kind="call", merchant=merchants["grid_a"])
    client = api_as(world.am_a)
    first = upload(client, a_visit, image_bytes()).json()
    second = upload(client, other, image_bytes(), kind="interior").json()
    rows = client.get(PHOTOS, {"activity": a_visit.pk}).json()["results"]
    assert [r["id"] for r in rows] == [first["id"]]
    rows = client.get(PHOTOS, {"kind": "interior"}).json()["results"]
    assert [r["id"] for r in rows] == [second["id"]]
    assert client.get(PHOTOS, {"merchant": merchants["grid_b"].pk}).json()["results"] == []
