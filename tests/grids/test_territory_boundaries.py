"""Boundaries: validation with the reason and the spot, overlaps refused then accepted, versions."""

import pytest
from django.contrib.gis.geos import MultiPolygon, Polygon
from django.core.exceptions import PermissionDenied, ValidationError

from grids.models import Grid, GridVersion
from grids.services.territory import area_m2, find_overlaps, grid_create, grid_update, validate_boundary
from tests.factories import cell

pytestmark = pytest.mark.django_db


def box(x0, y0, x1, y1):
    return Polygon.from_bbox((x0, y0, x1, y1))


def test_validate_boundary_returns_multipolygon():
    geom = validate_boundary(box(120.0, 30.0, 120.01, 30.01))
    assert geom.geom_type == "MultiPolygon" and geom.srid == 4326


def test_bowtie_is_refused_with_reason_and_spot():
    bowtie = Polygon(((120.0, 30.0), (120.01, 30.01), (120.01, 30.0), (120.0, 30.01), (120.0, 30.0)), srid=4326)
    with pytest.raises(ValidationError) as exc:
        validate_boundary(bowtie)
    error = exc.value.error_dict["geom"][0]
    assert "Self-intersection" in error.message % error.params
    assert error.params["lon"] == pytest.approx(120.005) and error.params["lat"] == pytest.approx(30.005)


@pytest.mark.parametrize(
    "geom",
    [None, Polygon(srid=4326), box(10.0, 30.0, 10.01, 30.01), MultiPolygon(srid=4326)],
)
def test_empty_missing_or_outside_china_is_refused(geom):
    with pytest.raises(ValidationError) as exc:
        validate_boundary(geom)
    assert "geom" in exc.value.error_dict


def test_overlap_is_refused_with_grids_and_area_then_accepted(world):
    # grid A is the factory cell; a box covering its east half overlaps it by ~half its area.
    x0, y0, x1, y1 = world.grid_a.geom.extent
    half = box((x0 + x1) / 2, y0, x1, y1)
    expected = area_m2(box((x0 + x1) / 2, y0, x1, y1))
    found = find_overlaps(half, sub_branch_id=world.sb1.pk)
    assert [o["grid_id"] for o in found] == [world.grid_a.pk]
    assert found[0]["area_m2"] == pytest.approx(expected, rel=1e-3)
    assert 400_000 < expected < 600_000  # ~0.005° x 0.01° at 30°N
    kwargs = {
        "by": world.branch_manager,
        "sub_branch": world.sb1,
        "name": "新网格",
        "code": "NEW1",
        "kind": "market",
        "geom": half,
    }
    with pytest.raises(ValidationError) as exc:
        grid_create(**kwargs)
    text = str(exc.value)
    assert world.grid_a.code in text and "平方米" in text  # the overlap area, zh-hans by default
    assert not Grid.objects.filter(code="NEW1").exists()
    grid = grid_create(**kwargs, accept_overlaps=True)
    assert grid.version == 1
    assert GridVersion.objects.filter(grid=grid, number=1).count() == 1


def test_touching_border_is_not_an_overlap(world):
    x0, y0, x1, y1 = world.grid_a.geom.extent
    west = box(x0 - 0.01, y0, x0, y1)
    assert find_overlaps(west, sub_branch_id=world.sb1.pk, exclude_grid_ids=[world.grid_b.pk]) == []


def test_other_sub_branch_is_not_a_sibling(world):
    assert find_overlaps(world.grid_c.geom, sub_branch_id=world.sb1.pk) == []


@pytest.mark.parametrize("who", ["am_a", "grid_leader_a", "mid_office", "am_c", "nobody"])
def test_only_managers_draw(world, who):
    with pytest.raises(PermissionDenied):
        grid_create(by=getattr(world, who), sub_branch=world.sb1, name="x", code="X9", geom=box(*cell(300)))


def test_regional_head_draws_in_branch(world):
    grid = grid_create(by=world.regional_head, sub_branch=world.sb2, name="x", code="X9", geom=box(*cell(300)))
    assert grid.sub_branch == world.sb2


def test_update_keeps_versions(world):
    grid = grid_update(grid=world.grid_a, by=world.branch_manager, name="改名", kind="park")
    assert grid.version == 2
    v = GridVersion.objects.get(grid=grid, number=2)
    assert (v.name, v.kind) == ("改名", "park")
    with pytest.raises(ValidationError):
        grid_update(grid=world.grid_a, by=world.branch_manager, code=world.grid_b.code)
    with pytest.raises(Grid.DoesNotExist):
        grid_update(grid=world.grid_c, by=world.branch_manager, name="y")
