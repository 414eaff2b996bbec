"""The generic scope checks (tests/scope_checks.py) on every endpoint of the funnel, activities,
photos, tasks and the funnel report."""

import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from crm.models import ActivityPhoto, Lead, LeadStageChange, Task
from crm.services.activities import activity_log
from crm.services.leads import lead_advance_stage, lead_create
from crm.services.photos import photo_attach
from tests.crm.test_photos import image_bytes
from tests.factories import MerchantFactory
from tests.scope_checks import ScopedEndpointChecks


def lead_in(world, merchant, product="loan"):
    return lead_create(merchant=merchant, product=product, by=world.admin)


class PairedRecords(ScopedEndpointChecks):
    """The mixin counts rows after ``in_scope`` and before ``out_of_scope``: both records are made
    on the first call (one in grid A, one in grid B) and returned from then on."""

    def make(self, world, merchant):
        raise NotImplementedError

    def pair(self, world, merchants):
        if getattr(self, "_pair", None) is None:
            self._pair = (self.make(world, merchants["grid_a"]), self.make(world, merchants["grid_b"]))
        return self._pair

    def in_scope(self, world, merchants):
        return self.pair(world, merchants)[0]

    def out_of_scope(self, world, merchants):
        return self.pair(world, merchants)[1]


class TestLeadEndpoint(PairedRecords):
    basename = "lead"

    def make(self, world, merchant):
        return lead_in(world, merchant)

    def make_many(self, world, n):
        for merchant in MerchantFactory.create_batch(n, grid=world.grid_c):
            lead_in(world, merchant)

    def write_outside(self, world, merchants):
        return "post", self.list_url(), {"merchant_id": merchants["grid_b"].pk, "product": "loan"}

    def test_advance_outside_scope_is_404_and_writes_nothing(self, world, merchants, api_as):
        other = self.out_of_scope(world, merchants)
        url = reverse("api:lead-advance", args=[other.pk])
        assert api_as(world.am_a).post(url, {"to_stage": "contacted"}, format="json").status_code == 404
        assert Lead.objects.get(pk=other.pk).stage == "lead"


class TestStageChangeEndpoint(PairedRecords):
    basename = "stagechange"

    def make(self, world, merchant):
        return LeadStageChange.objects.get(lead=lead_in(world, merchant))

    def make_many(self, world, n):
        for merchant in MerchantFactory.create_batch(n, grid=world.grid_c):
            lead_advance_stage(lead=lead_in(world, merchant), to_stage="visited", by=world.admin)


class TestActivityEndpoint(PairedRecords):
    basename = "activity"

    def make(self, world, merchant):
        return activity_log(by=world.admin, kind="visit", merchant=merchant)

    def make_many(self, world, n):
        for merchant in MerchantFactory.create_batch(n, grid=world.grid_c):
            activity_log(by=world.admin, kind="call", merchant=merchant)
        activity_log(
            by=world.admin,
            kind="event",
            grid=world.grid_c,
            title="沙龙",
            attendees=MerchantFactory.create_batch(5, grid=world.grid_c),
        )

    def write_outside(self, world, merchants):
        return "post", self.list_url(), {"kind": "visit", "merchant_id": merchants["grid_b"].pk}

    def test_event_of_another_grid_is_not_seen(self, world, merchants, api_as):
        event = activity_log(
            by=world.admin, kind="event", grid=world.grid_b, title="x", attendees=[merchants["grid_b"]]
        )
        assert api_as(world.am_a).get(reverse("api:activity-detail", args=[event.pk])).status_code == 404
        assert api_as(world.branch_manager).get(reverse("api:activity-detail", args=[event.pk])).status_code == 200

    def test_checkout_outside_scope_is_404(self, world, merchants, api_as):
        other = self.out_of_scope(world, merchants)
        url = reverse("api:activity-checkout", args=[other.pk])
        assert api_as(world.am_a).post(url, {}, format="json").status_code == 404


def photo_of(world, merchant):
    visit = activity_log(by=world.admin, kind="visit", merchant=merchant)
    file = SimpleUploadedFile("p.jpg", image_bytes(), content_type="image/jpeg")
    return photo_attach(activity=visit, by=world.admin, uploaded_file=file, kind="storefront")


class TestPhotoEndpoint(PairedRecords):
    basename = "photo"

    @pytest.fixture(autouse=True)
    def media_root(self, settings, tmp_path):
        settings.MEDIA_ROOT = str(tmp_path)

    def make(self, world, merchant):
        return photo_of(world, merchant)

    def make_many(self, world, n):
        for merchant in MerchantFactory.create_batch(n, grid=world.grid_c):
            photo_of(world, merchant)

    def test_write_outside_scope_is_rejected_and_writes_nothing(self, world, merchants, api_as):
        # The same check as the mixin's, with the upload's own body: multipart, not JSON.
        client = api_as(world.am_a)
        other = self.out_of_scope(world, merchants)
        before = ActivityPhoto.objects.count()
        snapshot = ActivityPhoto.objects.filter(pk=other.pk).values().get()
        for method in ("patch", "put", "delete"):
            response = getattr(client, method)(self.detail_url(other.pk), {"kind": "other"}, format="json")
            assert response.status_code in (404, 405), (method, response.status_code)
        assert ActivityPhoto.objects.filter(pk=other.pk).values().get() == snapshot
        file = SimpleUploadedFile("p.jpg", image_bytes(), content_type="image/jpeg")
        response = client.post(self.list_url(), {"activity": other.activity_id, "file": file}, format="multipart")
        assert response.status_code in (400, 403, 404), response.content
        assert "activity" in response.json()
        assert ActivityPhoto.objects.count() == before

    def test_file_outside_scope_is_404(self, world, merchants, api_as):
        other = self.out_of_scope(world, merchants)
        assert api_as(world.am_a).get(reverse("api:photo-file", args=[other.pk])).status_code == 404
        assert api_as(world.admin).get(reverse("api:photo-file", args=[other.pk])).status_code == 200


def task_for(world, merchant, owner=None):
    activity_log(
        by=owner or world.admin,
        kind="call",
        merchant=merchant,
        next_step="回访",
        next_due_at=timezone.now() + datetime.timedelta(days=2),
    )
    return Task.objects.latest("id")


class TestTaskEndpoint(PairedRecords):
    basename = "task"

    def make(self, world, merchant):
        return task_for(world, merchant)

    def make_many(self, world, n):
        for merchant in MerchantFactory.create_batch(n, grid=world.grid_c):
            task_for(world, merchant)

    def write_outside(self, world, merchants):
        other = self.out_of_scope(world, merchants)
        return "post", reverse("api:task-complete", args=[other.pk]), {}

    def test_complete_outside_scope_changes_nothing(self, world, merchants, api_as):
        other = self.out_of_scope(world, merchants)
        assert api_as(world.am_a).post(reverse("api:task-complete", args=[other.pk])).status_code == 404
        assert Task.objects.get(pk=other.pk).status == "open"


class TestFunnelReportEndpoint(ScopedEndpointChecks):
    """Rows are grids (``id`` = grid id): a grid member sees their grid's row only."""

    basename = "report-funnel"

    def in_scope(self, world, merchants):
        # Activity in grids A, B and C, so the list already holds rows am_a must not see.
        if not getattr(self, "_made", False):
            for key in ("grid_a", "grid_b", "grid_c"):
                lead_in(world, merchants[key])
                activity_log(by=world.admin, kind="visit", merchant=merchants[key])
            self._made = True
        return world.grid_a

    def out_of_scope(self, world, merchants):
        return world.grid_b

    def make_many(self, world, n):
        from tests.factories import GridFactory

        for grid in GridFactory.create_batch(n, sub_branch=world.sb2):
            merchant = MerchantFactory(grid=grid)
            lead_in(world, merchant)
            activity_log(by=world.admin, kind="call", merchant=merchant)

    def test_grid_member_sees_own_scope_only(self, world, merchants, api_as):
        super().test_grid_member_sees_own_scope_only(world, merchants, api_as)
        body = api_as(world.am_a).get(self.list_url()).json()
        assert [row["id"] for row in body["results"]] == [world.grid_a.pk]
        assert body["stages"]["lead"] == 1 and body["activities"]["visit"] == 1
