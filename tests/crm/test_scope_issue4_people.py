"""The generic scope checks for the people endpoint (a person is seen through a merchant one can see)."""

from crm.models import MerchantPerson, Person
from tests.factories import MerchantFactory
from tests.scope_checks import ScopedEndpointChecks, ids_in


def person_at(merchant, name="张三"):
    person = Person.objects.create(name=name, phone="13812345678")
    MerchantPerson.objects.create(merchant=merchant, person=person, role="owner")
    return person


class TestPersonEndpoint(ScopedEndpointChecks):
    basename = "person"

    @staticmethod
    def _people(merchants):
        # Both made on first use, so the records exist before the checks count rows.
        found = {}
        for key, name in (("grid_a", "甲老板"), ("grid_b", "乙老板")):
            found[key] = Person.objects.filter(merchant_links__merchant=merchants[key]).first() or person_at(
                merchants[key], name
            )
        return found

    def in_scope(self, world, merchants):
        return self._people(merchants)["grid_a"]

    def out_of_scope(self, world, merchants):
        return self._people(merchants)["grid_b"]

    def make_many(self, world, n):
        for i in range(n):
            person_at(MerchantFactory(grid=world.grid_c), f"丙老板{i}")

    def write_outside(self, world, merchants):
        # A new person linked to a grid B merchant: refused (400 on "merchant"), nothing written.
        return "post", self.list_url(), {"name": "越界联系人", "merchant": merchants["grid_b"].pk, "role": "contact"}


def test_links_to_merchants_out_of_scope_are_not_listed(world, merchants, api_as):
    both = person_at(merchants["grid_a"], "两地老板")
    MerchantPerson.objects.create(merchant=merchants["grid_c"], person=both, role="shareholder")
    body = api_as(world.am_a).get(f"/api/v1/people/{both.pk}/").json()
    assert [link["merchant"]["id"] for link in body["links"]] == [merchants["grid_a"].pk]
    assert merchants["grid_c"].name not in str(body)


def test_filter_by_merchant(world, merchants, api_as):
    a = person_at(merchants["grid_a"], "甲")
    person_at(MerchantFactory(grid=world.grid_a), "乙")
    response = api_as(world.am_a).get("/api/v1/people/", {"merchant": merchants["grid_a"].pk})
    assert ids_in(response) == {a.pk}
    # A merchant out of scope: an empty list, not an error that says it exists.
    response = api_as(world.am_a).get("/api/v1/people/", {"merchant": merchants["grid_c"].pk})
    assert response.status_code == 200 and ids_in(response) == set()


def test_create_links_the_person_and_read_only_roles_cannot(world, merchants, api_as):
    payload = {"name": "新股东", "merchant": merchants["grid_a"].pk, "role": "shareholder", "share_pct": "12.5"}
    response = api_as(world.am_a).post("/api/v1/people/", payload)
    assert response.status_code == 201, response.content
    assert response.json()["links"][0]["role"] == "shareholder"
    before = Person.objects.count()
    assert api_as(world.mid_office).post("/api/v1/people/", payload).status_code == 400
    missing_role = api_as(world.am_a).post("/api/v1/people/", {"name": "x", "merchant": merchants["grid_a"].pk})
    assert missing_role.status_code == 400 and "role" in missing_role.json()
    unlinked = api_as(world.am_a).post("/api/v1/people/", {"name": "x"})
    assert unlinked.status_code == 400 and "merchant" in unlinked.json()
    assert Person.objects.count() == before
