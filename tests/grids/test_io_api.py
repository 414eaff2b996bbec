"""Import (inspect -> preview -> commit) and export of grids and places through the API, on real
PostGIS and GDAL. The files are made in the tests (see test_io_readers for the helpers)."""

import datetime
import io
import json

import openpyxl
import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from grids.models import Grid, GridVersion, Place
from tests.factories import GridFactory
from tests.grids.test_io_readers import (
    X0,
    Y0,
    collection,
    feature,
    geojson_file,
    kml_file,
    kml_placemark,
    polygon,
    shapefile_zip,
    square,
    three_grids,
)

GRID_MAPPING = {"name": "名称", "code": "编码", "kind": "类型"}


def url(name):
    return reverse(f"api:{name}")


@pytest.fixture
def client_as(api_as):
    """An API client speaking English (the app defaults to Chinese)."""

    def make(user):
        client = api_as(user)
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
        return client

    return make


def post(client, name, upload, **fields):
    data = {"file": upload}
    for key, value in fields.items():
        data[key] = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
    return client.post(url(name), data, format="multipart")


def grid_counts():
    return Grid.objects.count(), GridVersion.objects.count()


# -- inspect ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_inspect_lists_fields_count_sample_and_suggests_a_mapping(world, client_as):
    response = post(client_as(world.branch_manager), "import-grid-inspect", geojson_file(three_grids()))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["format"] == "geojson"
    assert body["fields"] == ["名称", "编码", "类型"]
    assert body["feature_count"] == 3
    assert body["sample"][0] == {"名称": "导入网格1", "编码": "IMP1", "类型": "园区"}
    assert body["suggested_mapping"] == GRID_MAPPING


@pytest.mark.django_db
def test_inspect_suggests_english_names_case_insensitively(world, client_as):
    data = collection(feature(polygon(square(X0, Y0)), Grid_Name="a", CODE="b", Type="park"))
    body = post(client_as(world.branch_manager), "import-grid-inspect", geojson_file(data)).json()
    assert body["suggested_mapping"] == {"name": "Grid_Name", "code": "CODE", "kind": "Type"}
    kml = kml_file(kml_placemark("网格K", "K-001", square(X0, Y0)))
    body = post(client_as(world.branch_manager), "import-grid-inspect", kml).json()
    assert body["suggested_mapping"]["name"] == "Name"


# -- the case: three grids, one invalid ---------------------------------------------------


@pytest.mark.django_db
def test_three_grids_with_one_invalid_polygon_preview_shows_it_and_commit_saves_nothing(world, client_as):
    client = client_as(world.branch_manager)
    before = grid_counts()
    preview = post(
        client,
        "import-grid-preview",
        geojson_file(three_grids(invalid_row=2)),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    )
    assert preview.status_code == 200, preview.content
    report = preview.json()
    assert (report["row_count"], report["error_count"], report["can_commit"]) == (3, 1, False)
    assert [r["status"] for r in report["rows"]] == ["ok", "error", "ok"]
    [error] = report["rows"][1]["errors"]
    assert error["field"] == "geom"
    assert error["message"].startswith("row 2: Invalid boundary: Self-intersection at (121.505000, 31.205000)")
    assert error["spot"] == pytest.approx([X0 + 0.005, Y0 + 0.005])
    # The map preview: rows 1 and 3 as polygons, row 2 as the spot where it breaks.
    features = report["geojson"]["features"]
    assert [(f["properties"]["row"], f["geometry"]["type"]) for f in features] == [
        (1, "MultiPolygon"),
        (2, "Point"),
        (3, "MultiPolygon"),
    ]
    commit = post(
        client,
        "import-grid-commit",
        geojson_file(three_grids(invalid_row=2)),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    )
    assert commit.status_code == 400
    body = commit.json()
    assert "nothing was imported" in body["detail"]
    assert body["rows"][1]["status"] == "error"
    assert grid_counts() == before


@pytest.mark.django_db
def test_a_clean_file_is_committed_in_one_go(world, client_as):
    response = post(
        client_as(world.branch_manager),
        "import-grid-commit",
        geojson_file(three_grids(invalid_row=None)),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    )
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 3
    grids = Grid.objects.filter(pk__in=response.json()["ids"]).order_by("code")
    assert [(g.code, g.name, g.kind, g.sub_branch_id) for g in grids] == [
        (f"IMP{i}", f"导入网格{i}", "park", world.sb1.pk) for i in (1, 2, 3)
    ]
    assert GridVersion.objects.filter(grid__in=grids, number=1).count() == 3


@pytest.mark.django_db
def test_a_row_failing_while_writing_rolls_back_the_rows_before_it(world, client_as):
    """Row 3's code is taken by a concurrent writer after the report was made: PostgreSQL refuses
    the insert (a real unique violation, raised by a test-only trigger); rows 1 and 2 are gone too."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.refuse_imp3() RETURNS trigger AS $$
            BEGIN
              IF NEW.code = 'IMP3' THEN
                RAISE EXCEPTION 'duplicate key value violates unique constraint "grids_grid_code_key"'
                  USING ERRCODE = 'unique_violation';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_imp3 BEFORE INSERT ON grids_grid
              FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_imp3();
            """
        )
    before = grid_counts()
    response = post(
        client_as(world.branch_manager),
        "import-grid-commit",
        geojson_file(three_grids(invalid_row=None)),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    )
    assert response.status_code == 400, response.content
    rows = response.json()["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert "unique constraint" in rows[2]["errors"][0]["message"]
    assert grid_counts() == before
    assert not Grid.objects.filter(code__startswith="IMP").exists()


# -- overlaps -----------------------------------------------------------------------------------


def overlapping_grid_a(world):
    """A square shifted half a cell east of grid A: overlaps A by half its area."""
    x0, y0, x1, y1 = world.grid_a.geom.extent
    half = (x1 - x0) / 2
    return collection(feature(polygon(square(x0 + half, y0, x1 - x0)), 名称="越界网格", 编码="OVL1", 类型="商圈"))


def area_m2(geom):
    with connection.cursor() as cursor:
        cursor.execute("SELECT ST_Area(ST_Transform(%s::geometry, %s))", [geom.ewkt, settings.METRIC_SRID])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_overlap_with_an_existing_grid_is_reported_and_refused_unless_accepted(world, client_as):
    client = client_as(world.branch_manager)
    data = overlapping_grid_a(world)
    # The new square may also touch the next factory cell; only real area counts.
    report = post(
        client, "import-grid-preview", geojson_file(data), sub_branch=world.sb1.pk, mapping=GRID_MAPPING
    ).json()
    row = report["rows"][0]
    assert row["status"] == "overlap" and report["can_commit"] is False
    overlap = next(o for o in row["overlaps"] if o["grid_id"] == world.grid_a.pk)
    assert overlap["code"] == world.grid_a.code and overlap["name"] == world.grid_a.name
    assert overlap["area_m2"] == pytest.approx(area_m2(world.grid_a.geom) / 2, rel=0.01)
    before = grid_counts()
    refused = post(client, "import-grid-commit", geojson_file(data), sub_branch=world.sb1.pk, mapping=GRID_MAPPING)
    assert refused.status_code == 400
    assert "accept_overlaps" in refused.json()
    assert grid_counts() == before
    accepted = post(
        client,
        "import-grid-commit",
        geojson_file(data),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
        accept_overlaps="true",
    )
    assert accepted.status_code == 201, accepted.content
    assert Grid.objects.get(code="OVL1").kind == "business_district"


@pytest.mark.django_db
def test_rows_overlapping_each_other_are_reported_with_area(world, client_as):
    data = collection(
        feature(polygon(square(X0, Y0)), 名称="一", 编码="S1"),
        feature(polygon(square(X0 + 0.005, Y0)), 名称="二", 编码="S2"),
        feature(polygon(square(X0 + 0.02, Y0)), 名称="三", 编码="S3"),
    )
    report = post(
        client_as(world.branch_manager),
        "import-grid-preview",
        geojson_file(data),
        sub_branch=world.sb1.pk,
        mapping={"name": "名称", "code": "编码", "kind": None},
    ).json()
    rows = report["rows"]
    assert [r["status"] for r in rows] == ["overlap", "overlap", "ok"]
    assert [o["row"] for o in rows[0]["file_overlaps"]] == [2]
    assert rows[0]["file_overlaps"][0]["area_m2"] > 400_000  # half of a ~1.07 km² cell
    assert rows[0]["kind"] == "mixed"  # no type column: the default


# -- row checks -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_row_report_names_missing_duplicate_taken_codes_and_unknown_types(world, client_as):
    data = collection(
        feature(polygon(square(X0, Y0)), 名称="", 编码="D1", 类型="商圈"),
        feature(polygon(square(X0 + 0.02, Y0)), 名称="二", 编码="D1", 类型="Specialised market"),
        feature(polygon(square(X0 + 0.04, Y0)), 名称="三", 编码=world.grid_c.code, 类型="agricultural"),
        feature(polygon(square(X0 + 0.06, Y0)), 名称="四", 编码="", 类型="工厂"),
        feature(polygon(square(X0 + 0.08, Y0)), 名称="五", 编码="D5", 类型="混合"),
    )
    report = post(
        client_as(world.branch_manager),
        "import-grid-preview",
        geojson_file(data),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    ).json()
    errors = {r["row"]: [(e["field"], e["message"]) for e in r["errors"]] for r in report["rows"]}
    assert ("name", "row 1: the name is missing") in errors[1]
    assert any(f == "code" and "more than once in the file (rows 1, 2)" in m for f, m in errors[1])
    assert any(f == "code" and "more than once" in m for f, m in errors[2])
    assert errors[3] == [("code", f"row 3: another grid already has the code {world.grid_c.code}")]
    assert ("code", "row 4: the code is missing") in errors[4]
    assert any(f == "kind" and "type 工厂 is not recognised" in m for f, m in errors[4])
    assert errors[5] == []
    assert [r["kind"] for r in report["rows"]] == ["business_district", "market", "agricultural", None, "mixed"]


@pytest.mark.django_db
def test_mapping_must_name_fields_of_the_file(world, client_as):
    client = client_as(world.branch_manager)
    cases = [
        {"name": "名称"},  # code missing
        {"name": "名称", "code": "nope"},
        {"name": "名称", "code": "编码", "colour": "x"},
        "not an object",
    ]
    for mapping in cases:
        response = client.post(
            url("import-grid-preview"),
            {
                "file": geojson_file(three_grids()),
                "sub_branch": world.sb1.pk,
                "mapping": mapping if isinstance(mapping, str) else json.dumps(mapping, ensure_ascii=False),
            },
            format="multipart",
        )
        assert response.status_code == 400, (mapping, response.content)
        assert list(response.json()) == ["mapping"]


@pytest.mark.django_db
def test_kml_and_shapefile_go_through_the_same_steps(world, client_as):
    client = client_as(world.branch_manager)
    kml = kml_file(kml_placemark("网格K", "K-001", square(X0, Y0)))
    response = post(
        client, "import-grid-commit", kml, sub_branch=world.sb1.pk, mapping={"name": "Name", "code": "Description"}
    )
    assert response.status_code == 201, response.content
    assert Grid.objects.get(code="K-001").name == "网格K"
    data = collection(feature(polygon(square(X0 + 0.02, Y0)), name="形状", code="SHP1", kind="社区"))
    response = post(
        client,
        "import-grid-commit",
        shapefile_zip(data),
        sub_branch=world.sb1.pk,
        mapping={"name": "name", "code": "code", "kind": "kind"},
    )
    assert response.status_code == 201, response.content
    assert Grid.objects.get(code="SHP1").kind == "community"


# -- who may import -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["am_a", "grid_leader_a", "mid_office", "nobody", "former_am_a"])
@pytest.mark.parametrize("step", ["inspect", "preview", "commit"])
def test_only_managers_may_import(world, client_as, who, step):
    before = grid_counts()
    response = post(
        client_as(getattr(world, who)),
        f"import-grid-{step}",
        geojson_file(three_grids(None)),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    )
    assert response.status_code == 403
    assert grid_counts() == before


@pytest.mark.django_db
def test_anonymous_may_not_import(world, api_as):
    response = post(
        api_as(None),
        "import-grid-commit",
        geojson_file(three_grids(None)),
        sub_branch=world.sb1.pk,
        mapping=GRID_MAPPING,
    )
    assert response.status_code in (401, 403)


@pytest.mark.django_db
@pytest.mark.parametrize("step", ["preview", "commit"])
def test_a_sub_branch_outside_scope_is_a_400_on_sub_branch_and_writes_nothing(world, client_as, step):
    before = grid_counts()
    for sub_branch in (world.sb2.pk, world.grid_x.sub_branch_id, 999999):
        response = post(
            client_as(world.branch_manager),
            f"import-grid-{step}",
            geojson_file(three_grids(None)),
            sub_branch=sub_branch,
            mapping=GRID_MAPPING,
        )
        assert response.status_code == 400
        assert list(response.json()) == ["sub_branch"]
        assert "does not exist" in response.json()["sub_branch"][0]
    assert grid_counts() == before


@pytest.mark.django_db
def test_regional_head_imports_into_any_sub_branch_of_the_branch(world, client_as):
    response = post(
        client_as(world.regional_head),
        "import-grid-commit",
        geojson_file(three_grids(None)),
        sub_branch=world.sb2.pk,
        mapping=GRID_MAPPING,
    )
    assert response.status_code == 201, response.content
    assert set(Grid.objects.filter(code__startswith="IMP").values_list("sub_branch_id", flat=True)) == {world.sb2.pk}


@pytest.mark.django_db
def test_wrong_file_type_is_a_400_naming_file(world, client_as):
    client = client_as(world.branch_manager)
    from django.core.files.uploadedfile import SimpleUploadedFile

    for upload in (SimpleUploadedFile("grids.csv", b"name,code\n"), SimpleUploadedFile("grids.geojson", b"\x89PNG")):
        response = client.post(url("import-grid-inspect"), {"file": upload}, format="multipart")
        assert response.status_code == 400
        assert list(response.json()) == ["file"]
    assert client.post(url("import-grid-inspect"), {}, format="multipart").json().keys() == {"file"}
    # JSON bodies are not accepted on upload endpoints.
    assert client.post(url("import-grid-inspect"), {"file": "x"}, format="json").status_code == 415


@pytest.mark.django_db
def test_size_cap_is_a_400_naming_file(world, client_as, settings):
    settings.IMPORT_MAX_BYTES = 200
    response = post(client_as(world.branch_manager), "import-grid-inspect", geojson_file(three_grids()))
    assert response.status_code == 400
    assert "larger than" in response.json()["file"][0]


# -- places ---------------------------------------------------------------------------------------


def places_file(world):
    inside_a = list(world.grid_a.geom.point_on_surface.coords)
    inside_c = list(world.grid_c.geom.point_on_surface.coords)
    x0, y0, x1, y1 = world.grid_b.geom.extent
    park = [[[x0 + 0.001, y0 + 0.001], [x0 + 0.004, y0 + 0.001], [x0 + 0.004, y0 + 0.004], [x0 + 0.001, y0 + 0.001]]]
    return collection(
        feature({"type": "Point", "coordinates": inside_a}, 名称="四季青市场", 类型="专业市场"),
        feature(polygon(park), 名称="科技园", 类型="park"),
        feature({"type": "Point", "coordinates": inside_c}, 名称="滨江社区", 类型="社区"),
        feature({"type": "Point", "coordinates": [X0, Y0]}, 名称="无网格", 类型="行政村"),
    )


@pytest.mark.django_db
def test_places_preview_assigns_grids_in_the_database_and_refuses_strays(world, client_as):
    report = post(
        client_as(world.branch_manager),
        "import-place-preview",
        geojson_file(places_file(world)),
        sub_branch=world.sb1.pk,
        mapping={"name": "名称", "kind": "类型"},
    ).json()
    rows = report["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error"]
    assert rows[0]["grid"] == {"id": world.grid_a.pk, "code": world.grid_a.code}
    assert rows[1]["grid"]["id"] == world.grid_b.pk
    assert [r["kind"] for r in rows] == ["market", "park", "community", "village"]
    assert "lies in none of the grids" in rows[2]["errors"][0]["message"]  # grid C: another sub-branch
    assert "lies in none of the grids" in rows[3]["errors"][0]["message"]


@pytest.mark.django_db
def test_places_commit_is_all_or_nothing(world, client_as):
    client = client_as(world.branch_manager)
    before = Place.objects.count()
    data = places_file(world)
    refused = post(
        client,
        "import-place-commit",
        geojson_file(data),
        sub_branch=world.sb1.pk,
        mapping={"name": "名称", "kind": "类型"},
    )
    assert refused.status_code == 400
    assert Place.objects.count() == before
    data["features"] = data["features"][:2]
    created = post(
        client,
        "import-place-commit",
        geojson_file(data),
        sub_branch=world.sb1.pk,
        mapping={"name": "名称", "kind": "类型"},
    )
    assert created.status_code == 201, created.content
    places = Place.objects.filter(pk__in=created.json()["ids"]).order_by("name")
    assert [(p.name, p.kind, p.grid_id) for p in places] == [
        ("四季青市场", "market", world.grid_a.pk),
        ("科技园", "park", world.grid_b.pk),
    ]


@pytest.mark.django_db
def test_account_managers_may_not_import_places(world, client_as):
    response = post(
        client_as(world.am_a),
        "import-place-commit",
        geojson_file(places_file(world)),
        sub_branch=world.sb1.pk,
        mapping={"name": "名称", "kind": "类型"},
    )
    assert response.status_code == 403


# -- exports --------------------------------------------------------------------------------------


def export(client, path, **params):
    return client.get(f"/api/v1/exports/{path}", params)


def feature_ids(response):
    return {f["properties"]["id"] for f in json.loads(response.content)["features"]}


@pytest.mark.django_db
def test_grid_geojson_export_is_the_users_scope(world, merchants, client_as):
    response = export(client_as(world.branch_manager), "grids.geojson")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/geo+json"
    assert feature_ids(response) == {world.grid_a.pk, world.grid_b.pk}
    props = next(
        f["properties"] for f in json.loads(response.content)["features"] if f["properties"]["id"] == world.grid_a.pk
    )
    assert props["code"] == world.grid_a.code and props["name"] == world.grid_a.name
    assert props["kind"] == world.grid_a.kind and props["sub_branch_code"] == world.sb1.code
    assert props["area_m2"] == pytest.approx(area_m2(world.grid_a.geom), abs=0.1)
    assert 900_000 < props["area_m2"] < 1_200_000  # m², not square degrees
    # An account manager of another sub-branch sees none of it.
    assert feature_ids(export(client_as(world.am_c), "grids.geojson")) == {world.grid_c.pk}
    assert feature_ids(export(client_as(world.am_c), "grids.geojson", sub_branch=world.sb1.pk)) == set()
    # An out-of-scope sub-branch filter matches nothing (ids outside the scope are not revealed).
    assert feature_ids(export(client_as(world.branch_manager), "grids.geojson", sub_branch=world.sb2.pk)) == set()
    assert feature_ids(export(client_as(world.regional_head), "grids.geojson", sub_branch=world.sb2.pk)) == {
        world.grid_c.pk
    }
    assert feature_ids(export(client_as(world.nobody), "grids.geojson")) == set()


@pytest.mark.django_db
def test_grid_xlsx_export_has_headers_rows_and_a_dated_file_name(world, merchants, client_as):
    GridFactory(sub_branch=world.sb1, name='=HYPERLINK("http://evil","x")', code="ZZZ")
    response = export(client_as(world.branch_manager), "grids.xlsx")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    today = timezone.localdate(timezone=datetime.timezone(datetime.timedelta(hours=8)))
    assert response["Content-Disposition"] == f'attachment; filename="grids-{today:%Y%m%d}.xlsx"'
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (
        "ID",
        "Code",
        "Name",
        "Type",
        "Status",
        "Sub-branch code",
        "Sub-branch",
        "Area (m²)",
        "Boundary (GeoJSON)",
    )
    assert {r[0] for r in rows[1:]} == {world.grid_a.pk, world.grid_b.pk, Grid.objects.get(code="ZZZ").pk}
    row_a = next(r for r in rows if r[0] == world.grid_a.pk)
    assert row_a[1:3] == (world.grid_a.code, world.grid_a.name)
    assert json.loads(row_a[8])["type"] == "MultiPolygon"
    # A name that looks like a formula stays text.
    evil = next(c for c in sheet.iter_rows() if c[1].value == "ZZZ")[2]
    assert evil.data_type == "s" and evil.value.startswith("=HYPERLINK")


@pytest.mark.django_db
def test_grid_xlsx_headers_are_translated(world, api_as):
    client = api_as(world.branch_manager)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    sheet = openpyxl.load_workbook(io.BytesIO(export(client, "grids.xlsx").content)).active
    from django.utils import translation

    with translation.override("zh-hans"):
        from django.utils.translation import gettext

        assert next(sheet.iter_rows(values_only=True))[1] == gettext("Code")


@pytest.mark.django_db
def test_place_exports_are_the_users_scope(world, merchants, client_as):
    mine = set(Place.objects.filter(grid=world.grid_a).values_list("pk", flat=True))
    assert feature_ids(export(client_as(world.am_a), "places.geojson")) == mine
    sb2 = set(Place.objects.filter(grid=world.grid_c).values_list("pk", flat=True))
    assert feature_ids(export(client_as(world.am_c), "places.geojson")) == sb2
    assert feature_ids(export(client_as(world.regional_head), "places.geojson", sub_branch=world.sb2.pk)) == sb2
    response = export(client_as(world.am_c), "places.xlsx")
    rows = list(openpyxl.load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True))
    assert rows[0][:3] == ("ID", "Name", "Type") and {r[0] for r in rows[1:]} == sb2
    assert 'filename="places-' in response["Content-Disposition"]


@pytest.mark.django_db
def test_export_errors_are_json(world, client_as, api_as):
    unknown = export(client_as(world.branch_manager), "grids.csv")
    assert unknown.status_code == 404 and unknown["Content-Type"] == "application/json"
    bad = export(client_as(world.branch_manager), "grids.xlsx", bbox="1);DROP TABLE grids_grid;--,2,3,4")
    assert bad.status_code == 400 and "bbox" in bad.json()
    assert export(api_as(None), "grids.xlsx").status_code in (401, 403)


@pytest.mark.django_db
def test_export_larger_than_the_cap_is_refused_not_cut(world, merchants, client_as, settings):
    settings.EXPORT_MAX_FEATURES = 1
    for path in ("grids.geojson", "grids.xlsx", "places.geojson"):
        response = export(client_as(world.branch_manager), path)
        assert response.status_code == 400, path
        assert "filter" in response.json()["non_field_errors"][0]


@pytest.mark.django_db
def test_imported_grids_round_trip_through_the_export(world, client_as):
    client = client_as(world.branch_manager)
    assert (
        post(
            client, "import-grid-commit", geojson_file(three_grids(None)), sub_branch=world.sb1.pk, mapping=GRID_MAPPING
        ).status_code
        == 201
    )
    exported = export(client, "grids.geojson", sub_branch=world.sb1.pk)
    again = json.loads(exported.content)
    imported = [f for f in again["features"] if f["properties"]["code"].startswith("IMP")]
    assert len(imported) == 3
    # Re-importing the export: every code is taken now, and every row overlaps its original.
    report = post(
        client,
        "import-grid-preview",
        geojson_file({"type": "FeatureCollection", "features": imported}),
        sub_branch=world.sb1.pk,
        mapping={"name": "name", "code": "code", "kind": "kind"},
    ).json()
    assert report["error_count"] == 3
    assert all(r["overlaps"] for r in report["rows"])
