"""Merchant.version (incremented in the database on every save), the ETag of GET /merchants/{id}/
and If-Match on PATCH/PUT (412 with the current representation when stale)."""

from crm.models import Merchant
from crm.services.merchants import merchant_save

URL = "/api/v1/merchants/{}/"


def test_version_is_incremented_in_the_database_on_every_save(world, merchants):
    m = merchants["grid_a"]
    stale_a, stale_b = Merchant.objects.get(pk=m.pk), Merchant.objects.get(pk=m.pk)
    assert stale_a.version == 1
    merchant_save(merchant=stale_a, by=world.am_a, fields={"address": "一"})
    merchant_save(merchant=stale_b, by=world.am_a, fields={"name": "二"})  # a stale copy still counts up
    assert stale_a.version == 2 and stale_b.version == 3
    assert Merchant.objects.get(pk=m.pk).version == 3
    stale_b.save(update_fields=["name"])
    assert Merchant.objects.get(pk=m.pk).version == 4


def test_detail_has_an_etag_and_version(world, merchants, api_as):
    m = merchants["grid_a"]
    response = api_as(world.am_a).get(URL.format(m.pk))
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert response["ETag"] == f'W/"m{m.pk}-v1"'


def test_if_match_current_saves_and_answers_the_new_etag(world, merchants, api_as):
    m = merchants["grid_a"]
    client = api_as(world.am_a)
    etag = client.get(URL.format(m.pk))["ETag"]
    response = client.patch(URL.format(m.pk), {"address": "新"}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2 and response["ETag"] == f'W/"m{m.pk}-v2"'


def test_if_match_stale_is_412_with_the_current_copy_and_writes_nothing(world, merchants, api_as):
    m = merchants["grid_a"]
    client = api_as(world.am_a)
    etag = client.get(URL.format(m.pk))["ETag"]
    assert (
        client.patch(URL.format(m.pk), {"name": "别人先改了"}, format="json").status_code == 200
    )  # no If-Match: web UI
    response = client.patch(URL.format(m.pk), {"name": "我后改的"}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 412
    body = response.json()
    assert body["detail"] and body["current"]["name"] == "别人先改了" and body["current"]["version"] == 2
    assert response["ETag"] == f'W/"m{m.pk}-v2"'
    assert Merchant.objects.get(pk=m.pk).name == "别人先改了"
    put = dict(body["current"], name="PUT 也一样")
    put["location"] = body["current"]["location"]
    assert client.put(URL.format(m.pk), put, format="json", HTTP_IF_MATCH=etag).status_code == 412
    assert client.put(URL.format(m.pk), put, format="json", HTTP_IF_MATCH=response["ETag"]).status_code == 200


def test_if_match_out_of_scope_is_still_404(world, merchants, api_as):
    m = merchants["grid_b"]
    response = api_as(world.am_a).patch(URL.format(m.pk), {"name": "x"}, format="json", HTTP_IF_MATCH='W/"m1-v1"')
    assert response.status_code == 404


def test_list_exposes_version(world, merchants, api_as):
    data = api_as(world.am_a).get("/api/v1/merchants/").json()
    assert all(row["version"] == 1 for row in data["results"])
