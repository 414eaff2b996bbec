"""Redraw, split, merge and new-grid proposals: preview, apply (only changed rows), discard, stale;
automatic ownership rules; locked merchants; the shared-border rule."""

import datetime

import pytest
from django.contrib.gis.geos import LineString, MultiPolygon, Point, Polygon
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from crm.models import Merchant
from crm.services.merchants import merchant_assign, merchant_save, merchants_fix_stray_grids
from grids.models import Grid, GridVersion, Membership, Place, RedrawMove, RedrawProposal
from grids.services.ownership import assign_all_merchants, grid_owner_for
from grids.services.redraw import (
    StaleProposal,
    grid_create_preview,
    grid_merge,
    grid_split,
    redraw_apply,
    redraw_discard,
    redraw_preview,
)
from grids.services.team import team_assign
from tests.factories import MembershipFactory, MerchantFactory, UserFactory


def box(x0, y0, x1, y1):
    return MultiPolygon(Polygon.from_bbox((x0, y0, x1, y1)), srid=4326)


def at(grid, fx, fy=0.5):
    """A point at fraction (fx, fy) of the grid's extent."""
    x0, y0, x1, y1 = grid.geom.extent
    return Point(x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy, srid=4326)


@pytest.fixture
def ab(world):
    """Grids A and B side by side (B east of A), with merchants in B's west quarter and one in A."""
    a, b = world.grid_a, world.grid_b
    assert a.geom.extent[2] == pytest.approx(b.geom.extent[0])  # adjacent
    in_b_west = [MerchantFactory(grid=b, location=at(b, 0.1, 0.2 + 0.1 * i)) for i in range(3)]
    in_b_east = MerchantFactory(grid=b, location=at(b, 0.8))
    in_a = MerchantFactory(grid=a, location=at(a, 0.5))
    return a, b, in_b_west, in_b_east, in_a


def extended_a(a, b):
    x0, y0, x1, y1 = a.geom.extent
    return box(x0, y0, x1 + (b.geom.extent[2] - b.geom.extent[0]) * 0.25, y1)


def test_preview_lists_moves_owners_and_overlaps_then_apply(world, ab):
    a, b, west, east, in_a = ab
    am_b = UserFactory(username="am_b")
    MembershipFactory(user=am_b, grid=b)
    for m in west:
        Merchant.objects.filter(pk=m.pk).update(owner=am_b)
    Grid.objects.filter(pk=a.pk).update(ownership_rule="leader")
    wanted = extended_a(a, b)
    p = redraw_preview(grid=a, new_geom=wanted, by=world.branch_manager)
    moves = {m["id"]: m for m in p.merchant_moves}
    assert set(moves) == {m.pk for m in west}
    assert all(m["from_grid"] == b.pk and m["to_grid"] == a.pk for m in moves.values())
    assert all(m["from_owner"] == am_b.pk and m["to_owner"] == world.grid_leader_a.pk for m in moves.values())
    per_owner = {r["user_id"]: r for r in p.summary["per_owner"]}
    assert per_owner[am_b.pk]["losses"] == 3 and per_owner[world.grid_leader_a.pk]["gains"] == 3
    assert [o["grid_id"] for o in p.overlaps] == [b.pk]
    # Overlaps were previewed: refused unless accepted.
    with pytest.raises(ValidationError):
        redraw_apply(proposal=p, by=world.branch_manager)
    redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert set(Merchant.objects.filter(grid=a).values_list("pk", flat=True)) == {in_a.pk, *moves}
    assert set(Merchant.objects.filter(pk__in=moves).values_list("owner_id", flat=True)) == {world.grid_leader_a.pk}
    a.refresh_from_db()
    assert a.version == 2 and a.geom.equals(wanted)
    assert GridVersion.objects.filter(grid=a, number=2).exists()
    assert RedrawProposal.objects.get(pk=p.pk).status == "applied"
    with pytest.raises(ValidationError):
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)


def test_apply_updates_only_the_changed_rows(world, ab):
    a, b, west, east, in_a = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    before = dict(Merchant.objects.values_list("pk", "updated_at"))
    with CaptureQueriesContext(connection) as ctx:
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    after = dict(Merchant.objects.values_list("pk", "updated_at"))
    assert {pk for pk in before if before[pk] != after[pk]} == {m.pk for m in west}
    updates = [q["sql"] for q in ctx.captured_queries if "UPDATE crm_merchant" in q["sql"]]
    assert len(updates) == 1  # one set-based statement


def test_locked_merchant_is_listed_but_kept(world, ab):
    a, b, west, east, in_a = ab
    merchant_assign(merchant=west[0], by=world.branch_manager, grid=b, owner=None)
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    locked = [m for m in p.merchant_moves if m["locked"]]
    assert [m["id"] for m in locked] == [west[0].pk] and p.summary["locked"] == 1
    redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert Merchant.objects.get(pk=west[0].pk).grid_id == b.pk
    # ... and the nightly check does not call it a stray.
    assert merchants_fix_stray_grids().fixed == 0
    assert Merchant.objects.get(pk=west[0].pk).grid_id == b.pk


def test_discard_and_stale(world, ab):
    a, b, west, east, in_a = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    redraw_discard(proposal=p, by=world.branch_manager)
    assert RedrawProposal.objects.get(pk=p.pk).status == "discarded"
    assert Merchant.objects.filter(grid=a).count() == 1
    # Stale: the neighbour changed after the preview.
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    from grids.services.territory import grid_update

    grid_update(grid=b, by=world.branch_manager, name="B改")
    with translation.override("en"), pytest.raises(StaleProposal, match="changed since the preview"):
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    # Stale: a merchant in the area was saved after the preview.
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    Merchant.objects.filter(pk=west[1].pk).update(grid=None)
    with pytest.raises(StaleProposal):
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert Merchant.objects.filter(grid=a).count() == 1


def test_account_managers_cannot_redraw(world, ab):
    a, b, *_ = ab
    for who in (world.am_a, world.grid_leader_a, world.mid_office):
        with pytest.raises((PermissionDenied, Grid.DoesNotExist)):
            redraw_preview(grid=a, new_geom=extended_a(a, b), by=who)
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    with pytest.raises(RedrawProposal.DoesNotExist):
        redraw_apply(proposal=p, by=world.am_a, accept_overlaps=True)


def test_new_grid_takes_area_from_neighbours(world, ab):
    a, b, west, east, in_a = ab
    x0, y0, x1, y1 = b.geom.extent
    p = grid_create_preview(
        by=world.branch_manager,
        sub_branch=world.sb1,
        name="新市场",
        code="NEWM",
        geom=box(x0, y0, x0 + (x1 - x0) / 2, y1),
    )
    assert {m["id"] for m in p.merchant_moves} == {m.pk for m in west}
    assert not p.overlaps  # B is trimmed in the same proposal
    redraw_apply(proposal=p, by=world.branch_manager)
    new = Grid.objects.get(code="NEWM")
    assert set(Merchant.objects.filter(grid=new).values_list("pk", flat=True)) == {m.pk for m in west}
    b.refresh_from_db()
    assert b.version == 2 and b.geom.area == pytest.approx((x1 - x0) * (y1 - y0) / 2, rel=1e-6)


def test_split_by_line_and_merge(world, ab):
    a, b, west, east, in_a = ab
    x0, y0, x1, y1 = b.geom.extent
    mid = x0 + (x1 - x0) / 2
    line = LineString((mid, y0 - 0.001), (mid, y1 + 0.001), srid=4326)
    p = grid_split(grid=b, by=world.branch_manager, line=line, new_name="B2", new_code="B2")
    redraw_apply(proposal=p, by=world.branch_manager)
    b2 = Grid.objects.get(code="B2")
    moved = set(Merchant.objects.filter(grid=b2).values_list("pk", flat=True))
    # The grid keeps the larger (here: first) part; exactly one half moved.
    assert moved in ({m.pk for m in west}, {east.pk})
    p = grid_merge(grid_ids=[b.pk, b2.pk], by=world.branch_manager)
    redraw_apply(proposal=p, by=world.branch_manager)
    b2.refresh_from_db()
    assert b2.status == "retired"
    assert Merchant.objects.filter(grid=b).count() == 4
    with pytest.raises(ValidationError):
        grid_merge(grid_ids=[a.pk, world.grid_c.pk], by=world.regional_head)
    with pytest.raises(ValidationError):
        grid_split(grid=a, by=world.branch_manager, line=LineString((0, 0), (0, 1)), new_name="x", new_code="x")


def test_places_move_with_the_boundary(world, ab):
    a, b, *_ = ab
    place = Place.objects.create(name="市场", kind="market", geom=at(b, 0.1), grid=b)
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    assert [m["id"] for m in p.place_moves] == [place.pk]
    redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert Place.objects.get(pk=place.pk).grid_id == a.pk


# -- ownership ---------------------------------------------------------------------------------


def test_owner_rules_on_save(world):
    a = world.grid_a
    am2 = UserFactory(username="am2")
    MembershipFactory(user=am2, grid=a)
    m = merchant_save(merchant=Merchant(name="甲", location=at(a, 0.3)), by=world.branch_manager)
    assert (m.grid_id, m.owner_id) == (a.pk, world.grid_leader_a.pk)  # default rule: leader
    Grid.objects.filter(pk=a.pk).update(ownership_rule="pool")
    m = merchant_save(merchant=Merchant(name="乙", location=at(a, 0.3)), by=world.branch_manager)
    assert m.owner_id is None
    Grid.objects.filter(pk=a.pk).update(ownership_rule="round_robin")
    owners = []
    for i in range(4):
        m = merchant_save(merchant=Merchant(name=f"丙{i}", location=at(a, 0.3)), by=world.branch_manager)
        owners.append(m.owner_id)
    # Fewest merchants in the grid first, ties by user id: am_a, am2, am_a, am2.
    first, second = sorted([world.am_a.pk, am2.pk])
    assert owners == [first, second, first, second]


def test_shared_border_goes_to_lowest_grid_id(world):
    a, b = world.grid_a, world.grid_b
    on_border = Point(a.geom.extent[2], (a.geom.extent[1] + a.geom.extent[3]) / 2, srid=4326)
    m = merchant_save(merchant=Merchant(name="边界", location=on_border), by=world.branch_manager)
    assert m.grid_id == min(a.pk, b.pk)
    Merchant.objects.filter(pk=m.pk).update(grid=b)
    assign_all_merchants()
    assert Merchant.objects.get(pk=m.pk).grid_id == min(a.pk, b.pk)


def test_assign_all_merchants_sets_grid_and_owner_skips_locked(world, ab):
    a, b, west, east, in_a = ab
    Merchant.objects.filter(pk__in=[m.pk for m in west]).update(grid=None, owner=None)
    merchant_assign(merchant=east, by=world.branch_manager, grid=a)
    Grid.objects.filter(pk=b.pk).update(ownership_rule="pool")
    changed = assign_all_merchants(sub_branch=world.sb1)
    assert changed == 3
    assert set(Merchant.objects.filter(pk__in=[m.pk for m in west]).values_list("grid_id", flat=True)) == {b.pk}
    assert Merchant.objects.get(pk=east.pk).grid_id == a.pk  # locked stays


def test_team_assign_keeps_history(world):
    a = world.grid_a
    new_leader, am2 = UserFactory(username="nl"), UserFactory(username="am2")
    team_assign(grid=a, by=world.branch_manager, leader=new_leader, account_managers=[world.am_a, am2])
    assert grid_owner_for(grid_id=a.pk) == new_leader.pk
    old = Membership.objects.get(user=world.grid_leader_a, grid=a)
    assert old.end_date == datetime.date.today() - datetime.timedelta(days=1)
    team_assign(grid=a, by=world.branch_manager, account_managers=[am2])
    assert Membership.objects.get(user=world.am_a, grid=a).end_date is not None
    assert Membership.objects.filter(grid=a).count() == 5  # nothing deleted (incl. former_am_a)
    with pytest.raises(Grid.DoesNotExist):
        team_assign(grid=world.grid_c, by=world.branch_manager, account_managers=[am2])
    with pytest.raises(Grid.DoesNotExist):
        team_assign(grid=a, by=world.am_a, account_managers=[am2])


def test_preview_stores_the_moves_as_rows(world, ab):
    a, b, west, east, in_a = ab
    merchant_assign(merchant=west[0], by=world.branch_manager, grid=b, owner=None)
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    rows = {mv.merchant_id: mv for mv in RedrawMove.objects.filter(proposal=p)}
    assert set(rows) == {m["id"] for m in p.merchant_moves} == {m.pk for m in west}
    for m in p.merchant_moves:
        row = rows[m["id"]]
        assert (row.from_grid_id, row.to_grid_id, row.to_owner_id, row.locked) == (
            m["from_grid"],
            m["to_grid"],
            m["to_owner"],
            m["locked"],
        )
    assert rows[west[0].pk].locked


def test_stale_when_a_moved_merchant_left_the_area_after_the_preview(world, ab):
    """Caught by the merchant UPDATE itself (the row no longer matches): nothing is written."""
    a, b, west, east, in_a = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    # Saved after the preview, now outside the redrawn area but still filed under B.
    Merchant.objects.filter(pk=west[2].pk).update(location=at(b, 0.9), updated_at=timezone.now())
    with translation.override("en"), pytest.raises(StaleProposal, match="1 merchants in this area"):
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert Merchant.objects.filter(grid=a).count() == 1
    a.refresh_from_db()
    assert a.version == 1 and RedrawProposal.objects.get(pk=p.pk).status == "proposed"


def test_stale_when_a_locked_move_was_unlocked(world, ab):
    a, b, west, east, in_a = ab
    merchant_assign(merchant=west[0], by=world.branch_manager, grid=b, owner=None)
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    Merchant.objects.filter(pk=west[0].pk).update(assignment_locked=False)
    with pytest.raises(StaleProposal):
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert Merchant.objects.filter(grid=a).count() == 1


def test_apply_reads_the_move_rows_not_the_json(world, ab):
    """Applying writes what grids_redrawmove holds (the JSON is the display copy)."""
    a, b, west, east, in_a = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    RedrawProposal.objects.filter(pk=p.pk).update(merchant_moves=[])
    redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    assert set(Merchant.objects.filter(grid=a).values_list("pk", flat=True)) == {in_a.pk, *(m.pk for m in west)}


def test_an_instance_loaded_before_another_apply_is_refused(world, ab):
    """The status is re-read under the row lock: a copy loaded earlier cannot apply twice."""
    a, b, west, east, in_a = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    earlier = RedrawProposal.objects.get(pk=p.pk)
    redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    with pytest.raises(ValidationError):
        redraw_apply(proposal=earlier, by=world.branch_manager, accept_overlaps=True)
    a.refresh_from_db()
    assert a.version == 2 and GridVersion.objects.filter(grid=a, number=2).count() == 1


# -- applying in few statements ---------------------------------------------------------------


def test_apply_is_the_scope_and_one_statement(world, ab):
    """The user's scope, then one statement: the proposal read under its lock, every write and
    every check. The proposal may be passed by id (the API does)."""
    a, b, west, east, in_a = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    with translation.override("en"), CaptureQueriesContext(connection) as ctx:
        applied = redraw_apply(proposal=p.pk, by=world.branch_manager, accept_overlaps=True)
    statements = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 2, statements  # the user's memberships, then the apply
    assert applied.status == "applied" and applied.decided_by == world.branch_manager
    assert applied.sub_branch == world.sb1 and applied.grid == a  # loaded for the answer
    stored = RedrawProposal.objects.get(pk=p.pk)
    assert (stored.status, stored.decided_by_id, stored.decided_at) == (
        "applied",
        world.branch_manager.pk,
        applied.decided_at,
    )
    assert stored.summary == applied.summary and stored.summary["created_grids"] == {}
    a.refresh_from_db()
    version = GridVersion.objects.get(grid=a, number=2)
    assert (version.name, version.code, version.status, version.created_by_id) == (
        a.name,
        a.code,
        "active",
        world.branch_manager.pk,
    )
    assert version.geom.equals(a.geom) and version.note == f"Boundary by Redraw #{p.pk}"
    assert set(Merchant.objects.filter(grid=a).values_list("pk", flat=True)) == {in_a.pk, *(m.pk for m in west)}


def test_merge_retires_and_versions_every_grid(world, ab):
    a, b, *_ = ab
    p = grid_merge(grid_ids=[a.pk, b.pk], by=world.branch_manager)
    redraw_apply(proposal=p, by=world.branch_manager)
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, a.version, b.status, b.version) == ("active", 2, "retired", 2)
    assert GridVersion.objects.get(grid=b, number=2).status == "retired"
    assert p.status == "applied"  # the instance passed in gets the applied state too


def test_a_grid_moved_to_another_sub_branch_after_the_preview(world, ab):
    """The grids written must still be ones the user may draw (asked of drawable_grids() when one
    no longer lies in the proposal's sub-branch)."""
    a, b, west, *_ = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    Grid.objects.filter(pk=a.pk).update(sub_branch=world.sb2)
    with pytest.raises(RedrawProposal.DoesNotExist):
        redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    a.refresh_from_db()
    assert a.version == 1 and RedrawProposal.objects.get(pk=p.pk).status == "proposed"
    # The regional head draws in both sub-branches: the apply goes through.
    redraw_apply(proposal=p, by=world.regional_head, accept_overlaps=True)
    assert set(Merchant.objects.filter(pk__in=[m.pk for m in west]).values_list("grid_id", flat=True)) == {a.pk}


def test_may_draw_in_agrees_with_drawable_sub_branches(world):
    from grids.models import SubBranch
    from grids.services._scope import drawable_sub_branches, may_draw_in

    sub_branches = list(SubBranch.objects.select_related(None))
    for who in ("admin", "regional_head", "mid_office", "branch_manager", "grid_leader_a", "am_a", "nobody"):
        user = getattr(world, who)
        drawable = set(drawable_sub_branches(user).values_list("pk", flat=True))
        assert {sb.pk for sb in sub_branches if may_draw_in(user, sb)} == drawable, who


def test_history_says_who_applied_which_proposal(world, ab):
    """Every event the apply writes (the moved merchants, the redrawn grid) carries the context."""
    from crm.models import MerchantEvent
    from grids.models import GridEvent

    a, b, west, *_ = ab
    p = redraw_preview(grid=a, new_geom=extended_a(a, b), by=world.branch_manager)
    redraw_apply(proposal=p, by=world.branch_manager, accept_overlaps=True)
    events = [
        *MerchantEvent.objects.filter(pgh_obj__in=west, pgh_label="update").select_related("pgh_context"),
        *GridEvent.objects.filter(pgh_obj=a, pgh_label="update").select_related("pgh_context"),
    ]
    assert len(events) == len(west) + 1
    assert {e.pgh_context_id for e in events} != {None} and len({e.pgh_context_id for e in events}) == 1
    metadata = events[0].pgh_context.metadata
    assert metadata["redraw_proposal"] == p.pk and metadata["by"] == world.branch_manager.pk
