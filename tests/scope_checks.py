"""The generic scope checks every API endpoint's test class inherits (after NetBox).

A subclass names its router ``basename`` and says how to make a record inside and outside the
scope of ``world.am_a`` (an account manager of grid A). tests/test_api_coverage.py fails when a
router endpoint has no subclass here."""

import pytest
from django.urls import NoReverseMatch, reverse


def ids_in(response) -> set[int]:
    """Record ids in a list response: paginated JSON, a plain list, or a GeoJSON FeatureCollection."""
    data = response.json()
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return {f["properties"]["id"] for f in data["features"]}
    if isinstance(data, dict) and "results" in data:
        return {row["id"] for row in data["results"]}
    return {row["id"] for row in data}


class ScopedEndpointChecks:
    basename: str = ""
    #: reference data (the same for everyone who holds a scope) has no "out of scope" record
    reference: bool = False
    query_budget: int = 8

    # -- hooks ------------------------------------------------------------------------------
    def in_scope(self, world, merchants):
        """A record ``world.am_a`` may see."""
        raise NotImplementedError

    def out_of_scope(self, world, merchants):
        """A record in grid B / sub-branch 2 / another branch that am_a may not see."""
        raise NotImplementedError

    def make_many(self, world, n):
        """Create ``n`` more records visible to the regional head (for the query budget)."""

    def write_outside(self, world, merchants):
        """(method, url, payload) of a write by am_a that would land outside their scope, or None."""
        return None

    def count(self):
        return None

    # -- helpers ------------------------------------------------------------------------------
    def list_url(self):
        return reverse(f"api:{self.basename}-list")

    def detail_url(self, pk):
        try:
            return reverse(f"api:{self.basename}-detail", args=[pk])
        except NoReverseMatch:
            return None

    # -- the checks ---------------------------------------------------------------------------
    def test_anonymous_is_refused(self, world, merchants, api_as):
        client = api_as(None)
        assert client.get(self.list_url()).status_code in (401, 403)
        url = self.detail_url(self.in_scope(world, merchants).pk)
        if url:
            assert client.get(url).status_code in (401, 403)

    @pytest.mark.parametrize("who", ["nobody", "former_am_a"])
    def test_user_without_scope_sees_nothing(self, who, world, merchants, api_as):
        client = api_as(getattr(world, who))
        response = client.get(self.list_url())
        assert response.status_code == 200, response.content
        assert ids_in(response) == set()
        url = self.detail_url(self.in_scope(world, merchants).pk)
        if url:
            assert client.get(url).status_code == 404

    def test_grid_member_sees_own_scope_only(self, world, merchants, api_as):
        client = api_as(world.am_a)
        mine = self.in_scope(world, merchants)
        seen = ids_in(client.get(self.list_url()))
        assert mine.pk in seen
        if self.reference:
            assert seen == ids_in(api_as(world.admin).get(self.list_url()))
            return
        other = self.out_of_scope(world, merchants)
        assert other.pk not in seen
        if self.detail_url(other.pk):
            assert client.get(self.detail_url(mine.pk)).status_code == 200
            assert client.get(self.detail_url(other.pk)).status_code == 404
        # ... and the wider roles do see it
        assert other.pk in ids_in(api_as(world.admin).get(self.list_url()))

    def test_write_outside_scope_is_rejected_and_writes_nothing(self, world, merchants, api_as):
        client = api_as(world.am_a)
        model = type(self.in_scope(world, merchants))
        before = model.objects.count()
        other = self.out_of_scope(world, merchants) if not self.reference else None
        # Changing a record out of scope: 404 (or 405 on read-only endpoints), nothing changes.
        if other is not None and self.detail_url(other.pk):
            snapshot = model.objects.filter(pk=other.pk).values().get()
            for method in ("patch", "put", "delete"):
                response = getattr(client, method)(self.detail_url(other.pk), {"name": "x"}, format="json")
                assert response.status_code in (404, 405), (method, response.status_code)
            assert model.objects.filter(pk=other.pk).values().get() == snapshot
        # Creating something that would land outside the scope: refused, nothing written.
        spec = self.write_outside(world, merchants)
        if spec is None:
            assert client.post(self.list_url(), {"name": "x"}, format="json").status_code in (403, 405)
        else:
            method, url, payload = spec
            response = getattr(client, method)(url, payload, format="json")
            assert response.status_code in (400, 403, 404), response.content
        assert model.objects.count() == before

    def test_list_stays_under_query_budget(self, world, merchants, api_as, django_assert_max_num_queries):
        self.make_many(world, 25)
        client = api_as(world.regional_head)
        with django_assert_max_num_queries(self.query_budget):
            response = client.get(self.list_url())
        assert response.status_code == 200
