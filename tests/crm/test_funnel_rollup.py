"""The funnel rollup: whole local months from crm_funnelmonthcount, the rest (edges of the period,
rows written since the rollup was built) from the raw rows; the report is the same either way."""

import datetime

import pytest
from django.utils import timezone

from crm.models import Activity, FunnelMonthCount, FunnelRollupState, LeadStageChange
from crm.models.funnel import ROLLUP_KIND_COLUMNS, ROLLUP_STAGE_COLUMNS
from crm.selectors.funnel import funnel_summary
from crm.services.activities import activity_log
from crm.services.funnel_rollup import ROLLUP_MARGIN, funnel_rollup_rebuild
from crm.services.leads import lead_advance_stage, lead_create
from crm.tasks import refresh_funnel_rollup
from tests.factories import MerchantFactory


def local_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), timezone.get_default_timezone())


def month_start(day: datetime.date, back: int = 0) -> datetime.date:
    day = day.replace(day=1)
    for _ in range(back):
        day = (day - datetime.timedelta(days=1)).replace(day=1)
    return day


@pytest.fixture
def history(world):
    """Stage changes and activities over the last four local months in grids A, B and C, all
    written an hour ago (so a rebuild now puts them in the rollup)."""
    today = timezone.localdate()
    a, b, c = world.grid_a, world.grid_b, world.grid_c
    rows = []
    for back, grid in ((0, a), (1, a), (1, b), (2, c), (3, a), (3, b)):
        start = local_midnight(month_start(today, back))
        merchant = MerchantFactory(grid=grid)
        lead = lead_create(merchant=merchant, product="loan", by=world.admin)
        lead_advance_stage(lead=lead, to_stage="contacted", by=world.admin)
        for i, stage_change in enumerate(LeadStageChange.objects.filter(lead=lead)):
            stage_change.at = start + datetime.timedelta(days=3 + i, hours=5)
            rows.append(stage_change)
        for kind, day in (("visit", 2), ("call", 9), ("visit", 20)):
            visit = activity_log(by=world.admin, kind=kind, merchant=merchant)
            Activity.objects.filter(pk=visit.pk).update(occurred_at=start + datetime.timedelta(days=day, hours=1))
    LeadStageChange.objects.bulk_update(rows, ["at"])
    an_hour_ago = timezone.now() - datetime.timedelta(hours=1)
    LeadStageChange.objects.update(recorded_at=an_hour_ago)
    Activity.objects.update(received_at=an_hour_ago)
    return world


def raw_report(**kwargs) -> dict:
    """The report from the raw rows only (no rollup state: the selector's other path)."""
    state = FunnelRollupState.objects.filter(pk=1).first()
    FunnelRollupState.objects.filter(pk=1).delete()
    try:
        return funnel_summary(**kwargs)
    finally:
        if state:
            state.save(force_insert=True)


def periods():
    today = timezone.localdate()
    return {
        "last whole month": (local_midnight(month_start(today, 1)), local_midnight(month_start(today))),
        "three whole months": (local_midnight(month_start(today, 3)), local_midnight(month_start(today))),
        "mid-month to mid-month": (
            local_midnight(month_start(today, 3) + datetime.timedelta(days=5)),
            local_midnight(month_start(today, 1) + datetime.timedelta(days=12)),
        ),
        "this month until tomorrow": (
            local_midnight(month_start(today)),
            local_midnight(today + datetime.timedelta(days=1)),
        ),
        "part of one month": (
            local_midnight(month_start(today, 2) + datetime.timedelta(days=1)),
            local_midnight(month_start(today, 2) + datetime.timedelta(days=25)),
        ),
    }


def test_rebuild_counts_every_grid_month_and_value(history):
    state = funnel_rollup_rebuild()
    assert state.covers_before == state.built_at - ROLLUP_MARGIN
    rows = list(FunnelMonthCount.objects.values())
    total_stage = sum(row[column] for row in rows for column in ROLLUP_STAGE_COLUMNS)
    total_activity = sum(row[column] for row in rows for column in ROLLUP_KIND_COLUMNS)
    assert total_stage == LeadStageChange.objects.exclude(grid=None).count() == 12
    assert total_activity == Activity.objects.exclude(grid=None).count() == 18
    # Local months: a row at 05:00 Shanghai on the 4th is in that month, whatever its UTC date.
    months = set(FunnelMonthCount.objects.values_list("month", flat=True))
    assert months == {month_start(timezone.localdate(), back) for back in range(4)}

    # A second rebuild gives the same rows (it replaces, never adds).
    def snapshot():
        return sorted(
            tuple(sorted((k, v) for k, v in row.items() if k != "id")) for row in FunnelMonthCount.objects.values()
        )

    before = snapshot()
    funnel_rollup_rebuild()
    assert snapshot() == before


@pytest.mark.parametrize("name", list(periods()))
def test_the_rollup_path_answers_as_the_raw_rows(history, name):
    world = history
    since, until = periods()[name]
    funnel_rollup_rebuild()
    # Written after the rebuild: a visit logged offline last month and synced now, a stage change
    # back-dated into the month before: both must count, once.
    today = timezone.localdate()
    late = activity_log(by=world.am_a, kind="visit", merchant=MerchantFactory(grid=world.grid_a))
    Activity.objects.filter(pk=late.pk).update(
        occurred_at=local_midnight(month_start(today, 1)) + datetime.timedelta(days=7)
    )
    lead = lead_create(merchant=MerchantFactory(grid=world.grid_b), product="loan", by=world.admin)
    LeadStageChange.objects.filter(lead=lead).update(
        at=local_midnight(month_start(today, 2)) + datetime.timedelta(days=10)
    )
    for user, sub_branch in ((world.regional_head, None), (world.branch_manager, world.sb1.pk), (world.am_a, None)):
        kwargs = {"user": user, "sub_branch_id": sub_branch, "since": since, "until": until}
        assert funnel_summary(**kwargs) == raw_report(**kwargs), (name, user.username)


def test_whole_months_are_read_from_the_rollup(history):
    world = history
    funnel_rollup_rebuild()
    since, until = periods()["three whole months"]
    # Proof that the counts come from the rollup: the raw rows it covers are gone, the report stays.
    Activity.objects.all().delete()
    LeadStageChange.objects.all().delete()
    report = funnel_summary(user=world.regional_head, since=since, until=until)
    # Months 1..3 back: grids A (2 months), B (2), C (1), each a lead created and contacted.
    assert report["stages"]["lead"] == 5 and report["stages"]["contacted"] == 5
    assert report["activities"] == {"visit": 10, "call": 5, "event": 0}


def test_a_row_written_before_the_margin_but_committed_late_is_not_lost(history):
    """A stage change recorded just before ``covers_before`` by a transaction that committed after
    the rebuild is missing from the rollup until the next one: the margin is why that cannot
    happen with writes lasting less than ROLLUP_MARGIN. Rows recorded at or after it are read raw."""
    world = history
    state = funnel_rollup_rebuild()
    since, until = periods()["last whole month"]
    lead = lead_create(merchant=MerchantFactory(grid=world.grid_a), product="loan", by=world.admin)
    LeadStageChange.objects.filter(lead=lead).update(
        at=since + datetime.timedelta(days=1), recorded_at=state.covers_before
    )
    report = funnel_summary(user=world.regional_head, since=since, until=until)
    assert report == raw_report(user=world.regional_head, since=since, until=until)


def test_scope_holds_on_the_rollup_path(history):
    world = history
    funnel_rollup_rebuild()
    since, until = periods()["three whole months"]
    assert {row["id"] for row in funnel_summary(user=world.am_a, since=since, until=until)["grids"]} == {
        world.grid_a.pk
    }
    assert funnel_summary(user=world.nobody, since=since, until=until)["grids"] == []
    other = funnel_summary(user=world.am_c, since=since, until=until)
    assert {row["id"] for row in other["grids"]} == {world.grid_c.pk}


def test_the_beat_task_rebuilds(history):
    result = refresh_funnel_rollup()
    assert FunnelRollupState.objects.get().build_ms == result["build_ms"]
    assert FunnelMonthCount.objects.exists()
