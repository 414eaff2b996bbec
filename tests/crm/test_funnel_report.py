"""The funnel report: stage changes and activities counted per grid and period, within the user's
view scope, one query each, from the covering indexes."""

import datetime

import pytest
from django.db import connection
from django.utils import timezone

from crm.models import Activity, LeadStageChange
from crm.selectors.funnel import funnel_summary
from crm.services.activities import activity_log
from crm.services.leads import lead_advance_stage, lead_create
from tests.factories import MerchantFactory

REPORT = "/api/v1/reports/funnel/"


def period():
    now = timezone.now()
    return now - datetime.timedelta(days=1), now + datetime.timedelta(minutes=1)


@pytest.fixture
def funnel(world, merchants):
    """Grid A: three leads (one reaches applied, one is lost), two visits and a call; grid B: one
    lead and a call; grid C: one lead. Plus an old lead in grid A, moved 40 days ago."""
    from crm.models import LostReason

    reason, _ = LostReason.objects.get_or_create(code="rate", defaults={"name_zh": "利率", "name_en": "Rate"})
    a1, a2, a3 = merchants["grid_a"], MerchantFactory(grid=world.grid_a), MerchantFactory(grid=world.grid_a)
    l1 = lead_create(merchant=a1, product="loan", by=world.am_a, amount_requested=100)
    v1 = activity_log(by=world.am_a, kind="visit", merchant=a1, advance_lead=l1, advance_to="visited")
    lead_advance_stage(lead=l1, to_stage="interested", by=world.am_a, activity=v1)
    lead_advance_stage(lead=l1, to_stage="applied", by=world.am_a)
    l2 = lead_create(merchant=a2, product="loan", by=world.am_a)
    activity_log(by=world.am_a, kind="visit", merchant=a2, advance_lead=l2, advance_to="visited")
    lead_advance_stage(lead=l2, to_stage="lost", by=world.am_a, lost_reason=reason)
    lead_create(merchant=a3, product="loan", by=world.am_a)
    activity_log(by=world.am_a, kind="call", merchant=a3)
    lb = lead_create(merchant=merchants["grid_b"], product="loan", by=world.admin)
    activity_log(by=world.admin, kind="call", merchant=merchants["grid_b"], advance_lead=lb, advance_to="contacted")
    lead_create(merchant=merchants["grid_c"], product="loan", by=world.admin)
    # Old history: outside the period.
    old = lead_create(merchant=a1, product="deposit", by=world.am_a)
    long_ago = timezone.now() - datetime.timedelta(days=40)
    LeadStageChange.objects.filter(lead=old).update(at=long_ago)
    Activity.objects.create(kind="call", merchant=a1, grid=world.grid_a, by=world.am_a, occurred_at=long_ago)
    return world


def zeros(**counts):
    out = dict.fromkeys(("lead", "contacted", "visited", "interested", "applied", "approved", "disbursed", "lost"), 0)
    out.update(counts)
    return out


def test_counts_per_stage_and_kind_for_a_sub_branch(funnel):
    since, until = period()
    world = funnel
    summary = funnel_summary(user=world.branch_manager, since=since, until=until)
    assert summary["stages"] == zeros(lead=4, contacted=1, visited=2, interested=1, applied=1, lost=1)
    assert summary["activities"] == {"visit": 2, "call": 2, "event": 0}
    rows = {row["id"]: row for row in summary["grids"]}
    assert set(rows) == {world.grid_a.pk, world.grid_b.pk}  # grid C is in the other sub-branch
    assert rows[world.grid_a.pk]["stages"] == zeros(lead=3, visited=2, interested=1, applied=1, lost=1)
    assert rows[world.grid_a.pk]["activities"] == {"visit": 2, "call": 1, "event": 0}
    assert rows[world.grid_b.pk]["stages"] == zeros(lead=1, contacted=1)


def test_scope_and_filters(funnel):
    since, until = period()
    world = funnel
    am = funnel_summary(user=world.am_a, since=since, until=until)
    assert [row["id"] for row in am["grids"]] == [world.grid_a.pk]
    assert am["stages"]["lead"] == 3
    head = funnel_summary(user=world.regional_head, since=since, until=until)
    assert {row["id"] for row in head["grids"]} == {world.grid_a.pk, world.grid_b.pk, world.grid_c.pk}
    sb2 = funnel_summary(user=world.regional_head, sub_branch_id=world.sb2.pk, since=since, until=until)
    assert [row["id"] for row in sb2["grids"]] == [world.grid_c.pk]
    # Asking for a grid outside the scope gives nothing, not an error.
    assert funnel_summary(user=world.am_a, grid_ids=[world.grid_b.pk], since=since, until=until)["grids"] == []
    assert funnel_summary(user=world.nobody, since=since, until=until)["stages"] == zeros()


def test_the_period_is_respected(funnel):
    world = funnel
    now = timezone.now()
    old = funnel_summary(
        user=world.am_a, since=now - datetime.timedelta(days=41), until=now - datetime.timedelta(days=39)
    )
    assert old["stages"] == zeros(lead=1) and old["activities"] == {"visit": 0, "call": 1, "event": 0}


def test_one_statement_for_the_whole_report(funnel, django_assert_num_queries):
    since, until = period()
    with django_assert_num_queries(2):  # the user's memberships, then stage changes and activities together
        funnel_summary(user=funnel.branch_manager, sub_branch_id=funnel.sb1.pk, since=since, until=until)


def test_api_report_document_has_every_key_and_rows_by_code(funnel, api_as):
    """The document built by PostgreSQL: every stage and kind present (zeros included), totals
    equal to the sum of the rows, rows ordered by grid code, dates as asked."""
    body = api_as(funnel.regional_head).get(REPORT, {"since": "2024-01-01", "until": "2024-12-31"}).json()
    assert body["since"] == "2024-01-01" and body["until"] == "2024-12-31"
    assert body["stages"] == zeros() and body["activities"] == {"visit": 0, "call": 0, "event": 0}
    assert body["results"] == []
    body = api_as(funnel.regional_head).get(REPORT).json()
    assert list(body["stages"]) == list(zeros()) and list(body["activities"]) == ["visit", "call", "event"]
    codes = [row["code"] for row in body["results"]]
    assert codes == sorted(codes)
    for key in body["stages"]:
        assert body["stages"][key] == sum(row["stages"][key] for row in body["results"])
    for key in body["activities"]:
        assert body["activities"][key] == sum(row["activities"][key] for row in body["results"])
    assert all(set(row) == {"id", "name", "code", "stages", "activities"} for row in body["results"])


def test_stage_counts_come_from_the_covering_index(funnel):
    """With sequential scans off (the tables are tiny here), the stage query is an index-only scan
    of stage_change_grid_at: (grid, at) INCLUDE (to_stage)."""
    since, until = period()
    world = funnel
    from crm.models import LeadStageChange as LSC
    from grids.models import Grid

    grids = Grid.objects.restrict(world.branch_manager).values("pk")
    qs = LSC.objects.filter(grid_id__in=grids, at__gte=since, at__lt=until).order_by().values("grid_id", "to_stage")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        sql, params = qs.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using stage_change_grid_at" in plan, plan


# -- API ----------------------------------------------------------------------------------------


def test_api_report(funnel, api_as):
    world = funnel
    response = api_as(world.branch_manager).get(REPORT)
    assert response.status_code == 200, response.content
    body = response.json()
    today = timezone.localdate()
    assert body["since"] == today.replace(day=1).isoformat() and body["until"] == today.isoformat()
    assert body["stages"]["lead"] == 4 and body["activities"]["call"] == 2
    assert {row["id"] for row in body["results"]} == {world.grid_a.pk, world.grid_b.pk}
    row = next(r for r in body["results"] if r["id"] == world.grid_a.pk)
    assert row["name"] == world.grid_a.name and row["stages"]["applied"] == 1

    body = api_as(world.regional_head).get(REPORT, {"sub_branch": world.sb2.pk}).json()
    assert [row["id"] for row in body["results"]] == [world.grid_c.pk]
    body = api_as(world.regional_head).get(f"{REPORT}?grid={world.grid_a.pk}&grid={world.grid_c.pk}").json()
    assert {row["id"] for row in body["results"]} == {world.grid_a.pk, world.grid_c.pk}

    long_ago = (timezone.localdate() - datetime.timedelta(days=41)).isoformat()
    body = api_as(world.am_a).get(REPORT, {"since": long_ago, "until": long_ago}).json()
    assert body["stages"]["lead"] == 0
    forty = (timezone.localdate() - datetime.timedelta(days=40)).isoformat()
    body = api_as(world.am_a).get(REPORT, {"since": forty, "until": forty}).json()
    assert body["stages"]["lead"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2025-02-30"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-03-01", "until": "2025-02-01"}, "until"),
        ({"since": "2023-01-01", "until": "2025-01-01"}, "until"),
        ({"sub_branch": "abc"}, "sub_branch"),
        ({"sub_branch": "0"}, "sub_branch"),
        ({"grid": "x"}, "grid"),
        ({"sub_branch": str(2**70)}, "sub_branch"),
    ],
)
def test_api_bad_parameters_are_a_400_naming_them(world, api_as, params, field):
    response = api_as(world.am_a).get(REPORT, params)
    assert response.status_code == 400 and field in response.json()


def test_api_out_of_scope_sub_branch_is_empty(funnel, api_as):
    body = api_as(funnel.am_a).get(REPORT, {"sub_branch": funnel.sb2.pk}).json()
    assert body["results"] == [] and body["stages"]["lead"] == 0
