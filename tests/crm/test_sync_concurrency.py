"""The same outbox sent twice at once (a tablet retrying while its first request is still running):
one set of rows. Real concurrency: two threads, two database connections, through the live
server over HTTP, and the unique-constraint backstop with a competing uncommitted insert."""

import datetime
import json
import threading
import time
import urllib.request
import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from crm.models import Activity
from crm.models.merchants import MerchantSyncEdit

pytestmark = pytest.mark.django_db(transaction=True)


def batch(merchant, n):
    now = timezone.now() - datetime.timedelta(minutes=30)
    items = [
        {
            "client_uuid": str(uuid.uuid4()),
            "type": "activity",
            "device_time": (now + datetime.timedelta(seconds=i)).isoformat(),
            "payload": {"merchant": merchant.pk, "kind": "visit", "notes": f"第{i}次"},
        }
        for i in range(n)
    ]
    lon, lat = merchant.location.coords
    items.append(
        {
            "client_uuid": str(uuid.uuid4()),
            "type": "merchant_create",
            "device_time": now.isoformat(),
            "payload": {"name": "并发新店", "location": {"lat": lat + 0.0002, "lon": lon}},
        }
    )
    return items


def http_post(url, token, body):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


def test_same_batch_posted_concurrently_to_the_live_server_gives_one_set_of_rows(live_server, world, merchants):
    token = Token.objects.create(user=world.am_a).key
    items = batch(merchants["grid_a"], 60)
    start = threading.Barrier(2)
    answers = {}

    def send(name):
        start.wait(10)
        answers[name] = http_post(f"{live_server.url}/api/v1/sync/", token, {"items": items})

    threads = [threading.Thread(target=send, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {status for status, _body in answers.values()} == {200}
    a, b = (answers[n][1]["results"] for n in ("a", "b"))
    # Item by item: the same id on both sides, once "created" and once "duplicate".
    for x, y in zip(a, b, strict=True):
        assert x["id"] == y["id"] is not None
        assert {x["status"], y["status"]} == {"created", "duplicate"}
    uuids = [i["client_uuid"] for i in items]
    assert Activity.objects.filter(client_uuid__in=uuids).count() == 60
    assert MerchantSyncEdit.objects.filter(client_uuid__in=uuids).count() == 1
    from crm.models import Merchant

    assert Merchant.objects.filter(name="并发新店").count() == 1


def test_unique_constraint_backstop_when_another_connection_inserts_the_same_uuid(world, merchants, api_as):
    """Another connection inserts an activity with the item's UUID and holds its transaction open;
    the batch's insert waits on the unique index, then fails; the item's savepoint is rolled back
    and the row that won is answered as "duplicate" (the rest of the batch is kept)."""
    from crm.services.activities import activity_log

    m = merchants["grid_a"]
    contested = uuid.uuid4()
    inserted, release = threading.Event(), threading.Event()

    def competitor():
        try:
            with transaction.atomic():
                activity_log(by=world.am_a, kind="visit", merchant=m, client_uuid=contested)
                inserted.set()
                release.wait(20)
        finally:
            connection.close()

    other = threading.Thread(target=competitor)
    other.start()
    assert inserted.wait(20)
    answer = {}

    def sync():
        try:
            items = batch(m, 2)[:2]
            items[0]["client_uuid"] = str(contested)
            answer["r"] = api_as(world.am_a).post("/api/v1/sync/", {"items": items}, format="json")
        finally:
            connection.close()

    syncing = threading.Thread(target=sync)
    syncing.start()
    time.sleep(1.0)
    assert syncing.is_alive(), "the batch did not wait for the competing insert"
    release.set()
    other.join(20)
    syncing.join(20)
    results = answer["r"].json()["results"]
    won = Activity.objects.get(client_uuid=contested)
    assert results[0]["status"] == "duplicate" and results[0]["id"] == won.pk
    assert results[1]["status"] == "created"
    assert Activity.objects.filter(client_uuid=contested).count() == 1
