"""POST /api/v1/sync/photos/: a photo taken offline, idempotent by its own UUID, attached to a
visit by the visit's item UUID (or id), checked by crm.services.photos."""

import datetime
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from crm.models import ActivityPhoto, Merchant
from crm.services.activities import activity_log
from crm.services.merchants import merchant_assign
from tests.crm.test_photos import image_bytes
from tests.crm.test_sync_batch import backdate_history, post, results, visit

PHOTOS = "/api/v1/sync/photos/"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def send(client, **fields):
    data = {"kind": "storefront", **fields}
    if "file" not in data:
        data["file"] = SimpleUploadedFile("门头.jpg", image_bytes(), content_type="image/jpeg")
    return client.post(PHOTOS, {k: v for k, v in data.items() if v is not None}, format="multipart")


def stored_files(media_root):
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


def test_photo_by_the_visits_uuid_is_idempotent(world, merchants, api_as, media_root):
    client = api_as(world.am_a)
    v = visit(merchants["grid_a"])
    (r,) = results(post(client, [v]))
    photo_uuid = str(uuid.uuid4())
    first = send(client, client_uuid=photo_uuid, activity_client_uuid=v["client_uuid"])
    assert first.status_code == 200, first.content
    one = first.json()
    assert one["status"] == "created" and one["client_uuid"] == photo_uuid
    again = send(client, client_uuid=photo_uuid, activity_client_uuid=v["client_uuid"]).json()
    assert again["status"] == "duplicate" and again["id"] == one["id"]
    assert ActivityPhoto.objects.filter(activity_id=r["id"]).count() == 1
    assert len(stored_files(media_root)) == 1
    assert ActivityPhoto.objects.get(pk=one["id"]).client_uuid == uuid.UUID(photo_uuid)


def test_photo_by_activity_id(world, merchants, api_as):
    activity = activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"])
    r = send(api_as(world.am_a), client_uuid=str(uuid.uuid4()), activity=activity.pk).json()
    assert r["status"] == "created"


def test_photo_before_its_visit_is_rejected_and_can_be_retried(world, merchants, api_as):
    client = api_as(world.am_a)
    v = visit(merchants["grid_a"])
    photo_uuid = str(uuid.uuid4())
    early = send(client, client_uuid=photo_uuid, activity_client_uuid=v["client_uuid"]).json()
    assert early["status"] == "rejected" and "activity" in early["errors"]
    results(post(client, [v]))
    assert send(client, client_uuid=photo_uuid, activity_client_uuid=v["client_uuid"]).json()["status"] == "created"


def test_not_an_image_is_rejected_with_the_reason(world, merchants, api_as, media_root):
    activity = activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"])
    bad = SimpleUploadedFile("x.jpg", b"not an image at all", content_type="image/jpeg")
    r = send(api_as(world.am_a), client_uuid=str(uuid.uuid4()), activity=activity.pk, file=bad).json()
    assert r["status"] == "rejected" and "file" in r["errors"]
    assert not ActivityPhoto.objects.exists() and not stored_files(media_root)


def test_someone_elses_activity_is_rejected_without_leaking(world, merchants, api_as):
    other = activity_log(by=world.branch_manager, kind="visit", merchant=merchants["grid_b"])
    r = send(api_as(world.am_a), client_uuid=str(uuid.uuid4()), activity=other.pk).json()
    missing = send(api_as(world.am_a), client_uuid=str(uuid.uuid4()), activity=10**12).json()
    assert r["status"] == missing["status"] == "rejected"
    assert r["errors"] == missing["errors"]
    assert not ActivityPhoto.objects.exists()


@pytest.mark.parametrize("drop", ["client_uuid", "file", "activity"])
def test_malformed_upload_is_400_naming_the_field(world, merchants, api_as, drop):
    activity = activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"])
    fields = {
        "client_uuid": str(uuid.uuid4()),
        "activity": activity.pk,
        "file": SimpleUploadedFile("a.jpg", image_bytes(), content_type="image/jpeg"),
    }
    fields.pop(drop)
    response = api_as(world.am_a).post(PHOTOS, fields, format="multipart")
    assert response.status_code == 400 and drop in response.json()


def test_photo_of_a_late_visit_is_accepted(world, merchants, api_as):
    m = merchants["grid_a"]
    backdate_history()
    visited_at = timezone.now() - datetime.timedelta(hours=1)
    merchant_assign(merchant=m, by=world.branch_manager, grid=world.grid_b, owner=None)
    assert not Merchant.objects.restrict(world.am_a).filter(pk=m.pk).exists()
    v = visit(m)
    v["device_time"] = visited_at.isoformat()
    client = api_as(world.am_a)
    assert results(post(client, [v]))[0]["status"] == "created"
    r = send(client, client_uuid=str(uuid.uuid4()), activity_client_uuid=v["client_uuid"]).json()
    assert r["status"] == "created", r
