"""The generic scope checks for the sync endpoints (basename "sync"). Its "list" is the working
set (a document, not a page of records), so the checks that read records are adapted to it; the
write check posts an outbox item that would land outside the user's scope."""

import datetime
import uuid

from django.utils import timezone

from crm.models import Activity
from tests.factories import MerchantFactory
from tests.scope_checks import ScopedEndpointChecks

WS = "/api/v1/sync/working-set/"


def merchant_ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {m["id"] for m in response.json()["merchants"]}


class TestSyncScope(ScopedEndpointChecks):
    basename = "sync"
    query_budget = 6

    def list_url(self):
        return WS

    def detail_url(self, pk):
        return None  # the sync endpoints have no per-record URL

    def in_scope(self, world, merchants):
        return merchants["grid_a"]

    def out_of_scope(self, world, merchants):
        return merchants["grid_b"]

    def make_many(self, world, n):
        for _ in range(n):
            MerchantFactory(grid=world.grid_a)

    def test_user_without_scope_sees_nothing(self, world, merchants, api_as):
        for who in (world.nobody, world.former_am_a):
            assert merchant_ids(api_as(who).get(self.list_url())) == set()

    def test_grid_member_sees_own_scope_only(self, world, merchants, api_as):
        seen = merchant_ids(api_as(world.am_a).get(self.list_url()))
        assert merchants["grid_a"].pk in seen
        for key in ("grid_b", "grid_c", "grid_x"):
            assert merchants[key].pk not in seen
        # ... and the wider roles do see it, when they name the grid.
        wide = api_as(world.admin).get(self.list_url(), {"grid": world.grid_b.pk})
        assert merchants["grid_b"].pk in merchant_ids(wide)

    def test_write_outside_scope_is_rejected_and_writes_nothing(self, world, merchants, api_as):
        client = api_as(world.am_a)
        item = {
            "client_uuid": str(uuid.uuid4()),
            "type": "activity",
            "device_time": (timezone.now() - datetime.timedelta(minutes=1)).isoformat(),
            "payload": {"merchant": merchants["grid_b"].pk, "kind": "visit"},
        }
        response = client.post("/api/v1/sync/", {"items": [item]}, format="json")
        assert response.status_code == 200
        assert response.json()["results"][0]["status"] == "rejected"
        assert not Activity.objects.exists()
        # The working set is read-only.
        assert client.post(WS, {}, format="json").status_code == 405

    def test_list_stays_under_query_budget(self, world, merchants, api_as, django_assert_max_num_queries):
        self.make_many(world, 25)
        client = api_as(world.regional_head)
        with django_assert_max_num_queries(self.query_budget):
            response = client.get(self.list_url(), {"grid": f"{world.grid_a.pk},{world.grid_b.pk}"})
        assert response.status_code == 200
        assert len(response.json()["merchants"]) == 27
