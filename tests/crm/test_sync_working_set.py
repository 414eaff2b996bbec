"""GET /api/v1/sync/working-set/: exactly the user's scope, gzip, ETag/304, wide scopes name grids,
and the status endpoint for the logout guard."""

import datetime
import gzip
import json

from django.utils import timezone

from crm.models import Lead, Merchant, Task
from crm.services.leads import lead_create
from tests.factories import MerchantFactory

WS = "/api/v1/sync/working-set/"
STATUS = "/api/v1/sync/status/"


def body(response):
    assert response.status_code == 200, response.content
    raw = response.content
    if response.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def test_account_manager_gets_exactly_their_grid(world, merchants, api_as):
    extra = [MerchantFactory(grid=world.grid_a) for _ in range(3)]
    closed = MerchantFactory(grid=world.grid_a, status="closed")
    lead = lead_create(merchant=merchants["grid_a"], product="loan", by=world.am_a, amount_requested="50000.00")
    lead_b = lead_create(merchant=merchants["grid_b"], product="loan", by=world.branch_manager)
    due = timezone.now() + datetime.timedelta(days=1)
    task = Task.objects.create(owner=world.am_a, merchant=merchants["grid_a"], title="回访", due_at=due)
    own = Task.objects.create(owner=world.am_a, title="周会材料", due_at=due)
    Task.objects.create(owner=world.am_a, merchant=merchants["grid_a"], title="已完成", due_at=due, status="done")
    Task.objects.create(owner=world.branch_manager, merchant=merchants["grid_b"], title="B", due_at=due)

    data = body(api_as(world.am_a).get(WS))
    assert [g["id"] for g in data["grids"]] == [world.grid_a.pk]
    assert data["grids"][0]["geom"]["type"] == "MultiPolygon"
    want = {merchants["grid_a"].pk, *(m.pk for m in extra)}
    assert {m["id"] for m in data["merchants"]} == want  # never grid B/C/X, never a closed one
    assert closed.pk not in {m["id"] for m in data["merchants"]}
    row = next(m for m in data["merchants"] if m["id"] == merchants["grid_a"].pk)
    assert set(row) == {
        "id",
        "name",
        "address",
        "status",
        "grid",
        "owner",
        "lat",
        "lon",
        "version",
        "last_visit_at",
        "industry",
    }
    lon, lat = merchants["grid_a"].location.coords
    assert abs(row["lat"] - lat) < 1e-6 and abs(row["lon"] - lon) < 1e-6 and row["version"] == 1
    assert [(x["id"], x["amount_requested"]) for x in data["leads"]] == [(lead.pk, 50000.0)]
    assert lead_b.pk not in {x["id"] for x in data["leads"]}
    assert {t["id"] for t in data["tasks"]} == {task.pk, own.pk}
    assert data["user"] == {"id": world.am_a.pk, "username": "am_a", "full_name": world.am_a.full_name}
    assert {"stages", "outcomes", "intent", "photo_kinds", "activity_kinds", "industries"} <= set(data["choices"])
    assert ["visit", str(dict(data["choices"]["activity_kinds"])["visit"])] in data["choices"]["activity_kinds"]
    assert "event" not in dict(data["choices"]["activity_kinds"])
    assert datetime.datetime.fromisoformat(data["generated_at"])


def test_last_visit_at_is_the_latest_visit(world, merchants, api_as):
    from crm.services.activities import activity_log

    m = merchants["grid_a"]
    at = timezone.now() - datetime.timedelta(days=3)
    activity_log(by=world.am_a, kind="visit", merchant=m, occurred_at=at)
    activity_log(by=world.am_a, kind="call", merchant=m)
    data = body(api_as(world.am_a).get(WS))
    row = next(x for x in data["merchants"] if x["id"] == m.pk)
    assert datetime.datetime.fromisoformat(row["last_visit_at"]) == at


def test_users_without_scope_get_an_empty_working_set(world, merchants, api_as):
    for who in (world.nobody, world.former_am_a):
        data = body(api_as(who).get(WS))
        assert data["grids"] == data["merchants"] == data["leads"] == data["tasks"] == []


def test_anonymous_gets_json_403_not_a_redirect(world, api_as):
    for url in (WS, STATUS):
        response = api_as(None).get(url)
        assert response.status_code in (401, 403)
        assert response["Content-Type"].startswith("application/json")


def test_wide_scopes_must_name_grids(world, merchants, api_as):
    for who in (world.branch_manager, world.regional_head, world.admin):
        response = api_as(who).get(WS)
        assert response.status_code == 400 and "grid" in response.json()
    data = body(api_as(world.branch_manager).get(WS, {"grid": f"{world.grid_a.pk},{world.grid_b.pk}"}))
    assert {m["id"] for m in data["merchants"]} == {merchants["grid_a"].pk, merchants["grid_b"].pk}
    # A grid outside the scope (or that does not exist) is the same 400.
    for grid in (world.grid_c.pk, 10**12):
        response = api_as(world.branch_manager).get(WS, {"grid": str(grid)})
        assert response.status_code == 400 and "grid" in response.json()
    assert api_as(world.am_a).get(WS, {"grid": str(world.grid_b.pk)}).status_code == 400
    assert api_as(world.am_a).get(WS, {"grid": "a;b"}).status_code == 400


def test_gzip_when_accepted_and_plain_otherwise(world, merchants, api_as):
    for _ in range(30):
        MerchantFactory(grid=world.grid_a, address="杭州市西湖区文三路" * 3)
    client = api_as(world.am_a)
    zipped = client.get(WS, HTTP_ACCEPT_ENCODING="gzip, deflate")
    plain = client.get(WS)
    assert zipped["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped["Vary"]
    assert plain.get("Content-Encoding") is None
    assert len(zipped.content) < len(plain.content) / 3
    a, b = body(zipped), body(plain)
    a.pop("generated_at"), b.pop("generated_at")
    assert a == b


def test_etag_and_304(world, merchants, api_as):
    client = api_as(world.am_a)
    first = client.get(WS, HTTP_ACCEPT_ENCODING="gzip")
    etag = first["ETag"]
    assert etag.startswith('W/"')
    again = client.get(WS, HTTP_IF_NONE_MATCH=etag, HTTP_ACCEPT_ENCODING="gzip")
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    # Anything in the set changes -> a new ETag and the full document.
    Merchant.objects.filter(pk=merchants["grid_a"].pk).update(name="改过的名字")
    changed = client.get(WS, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert "改过的名字" in [m["name"] for m in body(changed)["merchants"]]
    # Another user's ETag never matches (the user is part of the document).
    assert api_as(world.grid_leader_a).get(WS, HTTP_IF_NONE_MATCH=changed["ETag"]).status_code == 200


def test_working_set_takes_a_fixed_number_of_queries(world, merchants, api_as, django_assert_max_num_queries):
    for _ in range(40):
        m = MerchantFactory(grid=world.grid_a)
        Lead.objects.create(merchant=m, product="loan")
    client = api_as(world.am_a)
    with django_assert_max_num_queries(4):  # memberships, grids, the document (+ savepoint-free)
        assert client.get(WS).status_code == 200


def test_status_is_cheap_and_says_who(world, api_as, django_assert_max_num_queries):
    client = api_as(world.am_a)
    with django_assert_max_num_queries(0):
        response = client.get(STATUS)
    data = response.json()
    assert data["user"]["id"] == world.am_a.pk and data["user"]["username"] == "am_a"
    assert abs(datetime.datetime.fromisoformat(data["server_time"]) - timezone.now()) < datetime.timedelta(minutes=1)


def test_status_after_logout_is_403_json(world, client, django_user_model):
    client.force_login(world.am_a)
    assert client.get(STATUS).status_code == 200
    client.logout()
    response = client.get(STATUS)
    assert response.status_code == 403 and response["Content-Type"].startswith("application/json")
