"""seed_demo and demo_logins against real PostGIS, on a small S world (hidden size options)."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from crm.demo import DEMO_PASSWORD, DEMO_USERS
from crm.models import Activity, Lead, LostReason, Merchant, Task
from crm.services import GRID_OF_LOCATION_SQL
from crm.validators import validate_credit_code
from grids.models import Branch, Grid, Membership, Place, SubBranch, User

SMALL = {"merchants": 800, "grids": 24, "places": 60}
REGION = "ST_MakeEnvelope(120.0, 30.1, 120.4, 30.45, 4326)"
EPS_AREA = 1e-12  # square degrees, about 0.01 m²


def seed(*, seed=7, **extra):
    out = io.StringIO()
    call_command("seed_demo", scale="S", seed=seed, stdout=out, **{**SMALL, **extra})
    return out.getvalue()


def one(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def all_rows(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def checksum():
    return (
        one(
            """
        SELECT md5(string_agg(concat_ws('|', m.id, m.name, ST_AsText(m.location), m.grid_id, m.owner_id,
                                        m.place_id, m.credit_code, m.industry_id, m.status, m.address), ';'
                              ORDER BY m.id)),
               (SELECT md5(string_agg(concat_ws('|', g.id, g.code, g.name, g.kind, ST_AsEWKB(g.geom)), ';'
                                      ORDER BY g.id)) FROM grids_grid g),
               (SELECT md5(string_agg(concat_ws('|', u.id, u.username, u.full_name), ';' ORDER BY u.id))
                  FROM grids_user u)
        FROM crm_merchant m
        """
        )
        + account_checksum()
    )


def account_checksum():
    """The rows of the account steps (people ... tasks), ids included."""
    queries = {
        "crm_person": "concat_ws('|', id, name, phone, id_number, created_at)",
        "crm_merchantperson": "concat_ws('|', id, merchant_id, person_id, role, share_pct, title)",
        "crm_personrelation": "concat_ws('|', id, from_person_id, to_person_id, kind)",
        "crm_merchantrelation": "concat_ws('|', id, from_merchant_id, to_merchant_id, kind, note)",
        "crm_productholding": "concat_ws('|', id, merchant_id, product, opened_on, matures_on, balance, active)",
        "crm_lead": "concat_ws('|', id, merchant_id, product, stage, intent, source, owner_id, amount_requested, "
        "amount_approved, amount_disbursed, lost_reason_id, lost_note, created_at, stage_changed_at)",
        "crm_leadstagechange": "concat_ws('|', id, lead_id, from_stage, to_stage, at, by_id, grid_id, owner_id, "
        "activity_id)",
        "crm_activity": "concat_ws('|', id, kind, merchant_id, grid_id, by_id, occurred_at, title, event_type, notes, "
        "outcome, intent, next_step, ST_AsText(checkin_location), checkin_accuracy_m, checkin_distance_m, "
        "checkin_flag, checkout_at, received_at)",
        "crm_eventattendance": "concat_ws('|', id, activity_id, merchant_id, person_id)",
        "crm_task": "concat_ws('|', id, owner_id, merchant_id, activity_id, lead_id, title, due_at, status, done_at, "
        "created_at)",
    }
    return tuple(one(f"SELECT md5(string_agg({expr}, ';' ORDER BY id)) FROM {t}")[0] for t, expr in queries.items())


@pytest.fixture
def demo(db):
    out = seed()
    return out


def test_summary_and_shape(demo):
    assert "merchants 800" in demo
    assert Branch.objects.get().name == "杭州分行"
    assert SubBranch.objects.count() == 5
    assert Grid.objects.count() == SMALL["grids"]
    assert Merchant.objects.count() == SMALL["merchants"]
    assert Place.objects.count() >= 50
    grid = Grid.objects.order_by("id").first()
    assert grid.name == f"{grid.sub_branch.name}-第1网格"
    assert len(set(SubBranch.objects.values_list("color", flat=True))) == 5
    assert one(f"SELECT count(*) FROM grids_subbranch WHERE NOT ST_Within(location, {REGION})") == (0,)
    # clustered merchants carry their place
    assert Merchant.objects.filter(place__isnull=False).count() == pytest.approx(0.6 * SMALL["merchants"], abs=2)


def test_same_seed_same_data_other_seed_other_data(demo):
    # --reset restarts the id sequences too (sequences are not rolled back between tests).
    seed(reset=True)
    first = checksum()
    seed(reset=True)
    assert checksum() == first
    seed(seed=8, reset=True)
    assert checksum()[0] != first[0]


def test_grids_tessellate_without_overlaps(demo):
    bad = all_rows(
        f"""
        SELECT a.code, b.code, ST_Area(ST_Intersection(a.geom, b.geom))
        FROM grids_grid a JOIN grids_grid b ON a.id < b.id AND a.geom && b.geom
        WHERE ST_Area(ST_Intersection(a.geom, b.geom)) > {EPS_AREA}
        """
    )
    assert bad == []
    assert one(
        "SELECT bool_and(ST_IsValid(geom)), bool_and(ST_SRID(geom) = 4326), "
        "bool_and(GeometryType(geom) = 'MULTIPOLYGON') FROM grids_grid"
    ) == (True, True, True)
    # Together the grids cover the region exactly; each sub-branch is one piece holding its outlet.
    missing, extra = one(
        f"""
        WITH u AS (SELECT ST_Union(geom) AS geom FROM grids_grid)
        SELECT ST_Area(ST_Difference({REGION}, u.geom)), ST_Area(ST_Difference(u.geom, {REGION})) FROM u
        """
    )
    assert missing < 1e-9 and extra < 1e-9
    for sb_id, parts, holds_outlet, n_grids in all_rows(
        """
        SELECT sb.id, ST_NumGeometries(ST_Union(g.geom)), ST_Intersects(ST_Union(g.geom), sb.location), count(*)
        FROM grids_subbranch sb JOIN grids_grid g ON g.sub_branch_id = sb.id GROUP BY sb.id
        """
    ):
        assert parts == 1, sb_id
        assert holds_outlet, sb_id
        assert n_grids >= 1


def test_grids_of_a_sub_branch_cover_its_voronoi_cell(demo):
    """The sub-branch area is the Voronoi cell of its outlet among the branch's outlets (clipped to the
    region): recompute it and compare with the union of the sub-branch's grids."""
    rows = all_rows(
        f"""
        WITH cells AS (
            SELECT (ST_Dump(ST_VoronoiPolygons(ST_Collect(location), 0, ST_Expand({REGION}, 0.05)))).geom AS cell
            FROM grids_subbranch
        ), area AS (
            SELECT sb.id, ST_Intersection(c.cell, {REGION}) AS geom
            FROM cells c JOIN grids_subbranch sb ON ST_Contains(c.cell, sb.location)
        )
        SELECT a.id, ST_Area(ST_SymDifference(a.geom, (SELECT ST_Union(g.geom) FROM grids_grid g
                                                        WHERE g.sub_branch_id = a.id)))
        FROM area a
        """
    )
    assert len(rows) == 5
    for sb_id, diff in rows:
        assert diff < 1e-9, sb_id


def test_every_merchant_sits_in_the_grid_of_its_location(demo):
    wrong = one(
        f"""
        SELECT count(*) FROM crm_merchant m
        WHERE m.grid_id IS DISTINCT FROM {GRID_OF_LOCATION_SQL.format(loc="m.location")}
        """
    )
    assert wrong == (0,)
    assert Merchant.objects.filter(grid__isnull=True).count() <= 2  # only on hairline slivers, if ever
    # The owner is an account manager of the merchant's grid.
    assert one(
        """
        SELECT count(*) FROM crm_merchant m WHERE m.grid_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM grids_membership ms
            WHERE ms.user_id = m.owner_id AND ms.grid_id = m.grid_id AND ms.role = 'account_manager')
        """
    ) == (0,)


def test_places_belong_to_the_grid_of_their_point_on_surface(demo):
    assert one(
        f"""
        SELECT count(*) FROM grids_place p
        WHERE p.grid_id IS DISTINCT FROM {GRID_OF_LOCATION_SQL.format(loc="ST_PointOnSurface(p.geom)")}
        """
    ) == (0,)
    assert one("SELECT bool_and(ST_IsValid(geom)) FROM grids_place") == (True,)
    kinds = set(Place.objects.values_list("kind", flat=True))
    assert kinds == {"park", "market", "business_district", "community", "village"}


def test_teams(demo):
    per_grid = dict(
        all_rows(
            "SELECT g.id, count(m.id) FROM grids_grid g LEFT JOIN grids_membership m "
            "ON m.grid_id = g.id AND m.role = 'account_manager' GROUP BY g.id"
        )
    )
    assert per_grid and all(1 <= n <= 3 for n in per_grid.values())
    per_am = [
        n for (n,) in all_rows("SELECT count(*) FROM grids_membership WHERE role = 'account_manager' GROUP BY user_id")
    ]
    assert all(1 <= n <= 5 for n in per_am)
    assert not Grid.objects.exclude(memberships__role="grid_leader").exists()
    assert SubBranch.objects.filter(memberships__role="branch_manager").distinct().count() == 5


def test_demo_users_log_in_and_hold_their_units(demo, client):
    for username in DEMO_USERS:
        assert client.login(username=username, password=DEMO_PASSWORD), username
        client.logout()
    assert User.objects.get(username="admin").is_superuser
    branch = Branch.objects.get()
    sb1 = SubBranch.objects.order_by("code").first()
    first_grid = Grid.objects.filter(sub_branch=sb1).order_by("id").first()
    assert Membership.objects.filter(user__username="region", role="regional_head", branch=branch).exists()
    assert Membership.objects.filter(user__username="midoffice", role="mid_office", branch=branch).exists()
    assert Membership.objects.filter(user__username="manager", role="branch_manager", sub_branch=sb1).exists()
    assert list(Membership.objects.filter(user__username="leader").values_list("role", "grid")) == [
        ("grid_leader", first_grid.pk)
    ]
    am_grids = list(
        Membership.objects.filter(user__username="am").order_by("grid_id").values_list("grid_id", flat=True)
    )
    assert am_grids == list(Grid.objects.filter(sub_branch=sb1).order_by("id").values_list("id", flat=True)[:3])
    assert Merchant.objects.filter(owner__username="am").exists()
    # Scoping sees what demo_logins promises.
    assert (
        Merchant.objects.restrict(User.objects.get(username="region")).count()
        == Merchant.objects.filter(grid__isnull=False).count()
    )


def test_credit_codes_valid_and_unique(demo):
    codes = list(Merchant.objects.filter(credit_code__isnull=False).values_list("credit_code", flat=True))
    assert 0.3 * SMALL["merchants"] < len(codes) < 0.5 * SMALL["merchants"]
    assert len(set(codes)) == len(codes)
    for code in codes:
        validate_credit_code(code)


def test_no_audit_rows_for_the_load_and_triggers_back_on(demo):
    assert one("SELECT count(*) FROM crm_merchantevent") == (0,)
    assert one("SELECT count(*) FROM grids_gridevent") == (0,)
    assert one("SELECT count(*) FROM grids_membershipevent") == (0,)
    m = Merchant.objects.order_by("id").first()
    Merchant.objects.filter(pk=m.pk).update(status="closed")
    assert one("SELECT count(*) FROM crm_merchantevent") == (1,)
    assert one("SELECT count(*) FROM pg_trigger WHERE tgenabled = 'D' AND NOT tgisinternal") == (0,)


def test_existing_data_if_empty_and_reset(demo):
    with pytest.raises(CommandError, match="--reset"):
        seed()
    assert "nothing loaded" in seed(if_empty=True)
    assert Merchant.objects.count() == SMALL["merchants"]
    seed(reset=True, merchants=300)
    assert Merchant.objects.count() == 300
    assert User.objects.filter(username="admin").count() == 1


def test_demo_logins_prints_url_and_table(demo):
    out = io.StringIO()
    call_command("demo_logins", stdout=out)
    text = out.getvalue()
    assert "http://127.0.0.1:8000/" in text
    for username in DEMO_USERS:
        assert f" {username} " in text
    assert DEMO_PASSWORD in text
    assert "杭州分行" in text and "Not in this database" not in text


# -- The account steps (issue 4): people, relations, products, leads, activities, tasks ------------

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
FUNNEL = ["lead", "contacted", "visited", "interested", "applied", "approved", "disbursed"]
ACCOUNT_TABLES = (
    "crm_person, crm_merchantperson, crm_personrelation, crm_merchantrelation, crm_productholding, crm_lead, "
    "crm_leadstagechange, crm_activity, crm_eventattendance, crm_task"
)


def test_account_steps_summary(demo):
    for key in ("persons", "merchant people", "leads", "stage changes", "activities", "visits", "events", "tasks"):
        assert f" {key} " in demo, key
    n = SMALL["merchants"]
    in_grid = Merchant.objects.filter(grid__isnull=False, owner__isnull=False).count()
    activities = one("SELECT count(*) FROM crm_activity WHERE merchant_id IS NOT NULL")[0]
    assert 8 * in_grid <= activities <= 13 * in_grid  # about 10 per merchant
    visits = one("SELECT count(*) FROM crm_activity WHERE kind = 'visit'")[0]
    assert 0.42 < visits / activities < 0.58
    with_lead = one("SELECT count(DISTINCT merchant_id) FROM crm_lead")[0]
    assert 0.28 * n < with_lead < 0.42 * n
    assert one("SELECT count(*) FROM crm_activity WHERE kind = 'event'")[0] >= SMALL["grids"]
    assert one("SELECT count(*) FROM crm_productholding")[0] > 0.3 * n


def test_people_around_merchants(demo):
    n = SMALL["merchants"]
    owners = one("SELECT count(DISTINCT merchant_id) FROM crm_merchantperson WHERE role = 'owner'")[0]
    legal = one("SELECT count(DISTINCT merchant_id) FROM crm_merchantperson WHERE role = 'legal_rep'")[0]
    assert owners > 0.85 * n and legal > 0.85 * n
    assert one("SELECT count(*) FROM crm_merchantperson WHERE role = 'shareholder'")[0] > 0
    assert one("SELECT count(*) FROM crm_merchantperson WHERE role = 'contact'")[0] > 0
    # Some people are linked to several merchants (chain prospecting finds them).
    assert (
        one(
            "SELECT count(*) FROM (SELECT person_id FROM crm_merchantperson GROUP BY 1 "
            "HAVING count(DISTINCT merchant_id) > 1) x"
        )[0]
        > 0
    )
    # Shares of a company add up to at most 100 %.
    assert (
        one(
            "SELECT coalesce(max(s), 0) FROM (SELECT sum(share_pct) s FROM crm_merchantperson "
            "WHERE role = 'shareholder' GROUP BY merchant_id) x"
        )[0]
        <= 100
    )
    # Family ties, never to oneself.
    assert one("SELECT count(*) FROM crm_personrelation")[0] > 0
    assert one("SELECT count(*) FROM crm_personrelation WHERE from_person_id = to_person_id") == (0,)
    rows = all_rows("SELECT name, phone, id_number FROM crm_person")
    phones = [r[1] for r in rows]
    assert len(set(phones)) == len(phones)
    for name, phone, id_number in rows:
        assert 2 <= len(name) <= 4 and not name.isascii(), name
        assert len(phone) == 11 and phone[:2] in ("13", "15", "18") and phone.isdigit(), phone
        assert len(id_number) == 18 and id_number[:17].isdigit(), id_number
        total = sum(int(c) * w for c, w in zip(id_number[:17], ID_WEIGHTS, strict=True))
        assert id_number[17] == "10X98765432"[total % 11], id_number
        born = id_number[6:14]
        assert "1950" <= born[:4] <= "2010" and "01" <= born[4:6] <= "12", id_number


def test_relations_and_products(demo):
    kinds = dict(all_rows("SELECT kind, count(*) FROM crm_merchantrelation GROUP BY 1"))
    assert kinds.get("supplier", 0) > 0 and kinds.get("guarantor", 0) > 0
    # Suppliers inside a cluster share its place (the rest supply shops of the same sub-branch).
    assert one(
        """
        SELECT count(*) FROM crm_merchantrelation r
        JOIN crm_merchant a ON a.id = r.from_merchant_id JOIN crm_merchant b ON b.id = r.to_merchant_id
        WHERE r.kind = 'supplier' AND a.place_id IS NOT NULL AND b.place_id IS NOT NULL AND a.place_id <> b.place_id
        """
    ) == (0,)
    assert one("SELECT count(*) FROM crm_merchantrelation WHERE from_merchant_id = to_merchant_id") == (0,)
    # Deposits for most customers; loans mature within 3 years, most within 12 months.
    customers, with_deposit = one(
        """
        SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM crm_productholding p
                                                       WHERE p.merchant_id = m.id AND p.product = 'deposit'))
        FROM crm_merchant m WHERE m.status = 'customer'
        """
    )
    assert with_deposit > 0.85 * customers
    soon, loans = one(
        "SELECT count(*) FILTER (WHERE matures_on <= current_date + 366), count(*) "
        "FROM crm_productholding WHERE product = 'loan'"
    )
    assert loans > 0 and soon > 0.5 * loans
    assert one("SELECT count(*) FROM crm_productholding WHERE product = 'loan' AND matures_on < current_date") == (0,)


def test_every_stage_history_is_legal_and_increasing(demo):
    leads = {
        r[0]: r[1:]
        for r in all_rows(
            """
            SELECT l.id, l.stage, l.created_at, l.stage_changed_at, l.lost_reason_id, l.owner_id, m.owner_id,
                   l.amount_requested, l.amount_approved, l.amount_disbursed
            FROM crm_lead l JOIN crm_merchant m ON m.id = l.merchant_id
            """
        )
    }
    changes: dict[int, list] = {}
    for row in all_rows(
        """
        SELECT sc.lead_id, sc.from_stage, sc.to_stage, sc.at, sc.by_id, sc.owner_id, sc.grid_id, m.grid_id, m.owner_id
        FROM crm_leadstagechange sc JOIN crm_lead l ON l.id = sc.lead_id JOIN crm_merchant m ON m.id = l.merchant_id
        ORDER BY sc.lead_id, sc.at, sc.id
        """
    ):
        changes.setdefault(row[0], []).append(row[1:])
    assert set(changes) == set(leads)
    reached = dict.fromkeys(FUNNEL, 0)
    for lead_id, (stage, created, changed_at, reason, owner, m_owner, req, appr, disb) in leads.items():
        rows = changes[lead_id]
        assert rows[0][0] == "" and rows[0][1] == "lead", lead_id
        assert rows[0][2] == created and rows[-1][2] == changed_at, lead_id
        for prev, cur in zip(rows, rows[1:], strict=False):
            assert cur[0] == prev[1], (lead_id, rows)  # from = the previous to
            assert cur[2] > prev[2], (lead_id, rows)  # strictly later
            assert prev[1] not in ("lost", "disbursed"), (lead_id, rows)  # nothing after a closed stage
            assert cur[1] == "lost" or FUNNEL.index(cur[1]) == FUNNEL.index(prev[1]) + 1, (lead_id, rows)
        for _f, to, _at, by, sc_owner, sc_grid, m_grid, merchant_owner in rows:
            # By the owner; grid and owner denormalised as they were (= now: no moves in the demo).
            assert by == sc_owner == owner == merchant_owner == m_owner, lead_id
            assert sc_grid == m_grid, lead_id
            if to != "lost":
                reached[to] += 1
        assert rows[-1][1] == stage
        assert (stage == "lost") == (reason is not None), lead_id
        top = max(FUNNEL.index(r[1]) for r in rows if r[1] != "lost")
        if top >= FUNNEL.index("applied"):
            assert req is not None, lead_id
        if top >= FUNNEL.index("approved"):
            assert appr is not None and appr <= req, lead_id
        if top >= FUNNEL.index("disbursed"):
            assert disb is not None and disb <= appr, lead_id
        if req is not None:
            assert 100_000 <= req <= 3_000_000
    n = len(leads)
    assert 0.45 < reached["contacted"] / n < 0.75
    assert 0.10 < reached["interested"] / n < 0.30
    assert reached["disbursed"] / n < 0.12
    lost = sum(1 for v in leads.values() if v[0] == "lost")
    assert 0.08 < lost / n < 0.25
    # All within the last 12 months, before today.
    assert one(
        "SELECT count(*) FROM crm_leadstagechange WHERE at >= date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') "
        "AT TIME ZONE 'Asia/Shanghai' OR at < now() - interval '367 days'"
    ) == (0,)


def test_activities_shape_and_checkins(demo, settings):
    # grid and author of a visit/call: the merchant's grid and owner when seeded.
    assert one(
        """
        SELECT count(*) FROM crm_activity a JOIN crm_merchant m ON m.id = a.merchant_id
        WHERE a.grid_id IS DISTINCT FROM m.grid_id OR a.by_id IS DISTINCT FROM m.owner_id
        """
    ) == (0,)
    # Check-in distance is PostGIS's geography distance; the flag follows the service's rule.
    rows = all_rows(
        """
        SELECT a.checkin_distance_m, ST_Distance(a.checkin_location::geography, m.location::geography),
               a.checkin_accuracy_m, a.checkin_flag
        FROM crm_activity a JOIN crm_merchant m ON m.id = a.merchant_id WHERE a.kind = 'visit'
        """
    )
    assert rows
    for stored, computed, accuracy, flag in rows:
        assert abs(stored - computed) < 1.0
        if stored > settings.CHECKIN_RADIUS_M:
            assert flag == "too_far"
        elif accuracy > settings.CHECKIN_MAX_ACCURACY_M:
            assert flag == "poor_accuracy"
        else:
            assert flag == "ok"
    flags = {f: sum(1 for r in rows if r[3] == f) for f in ("ok", "too_far", "poor_accuracy")}
    assert flags["ok"] > 0.75 * len(rows) and flags["too_far"] > 0 and flags["poor_accuracy"] > 0
    assert one(
        "SELECT count(*) FROM crm_activity WHERE kind <> 'visit' AND (checkin_location IS NOT NULL "
        "OR checkin_distance_m IS NOT NULL OR checkin_flag <> '' OR checkout_at IS NOT NULL)"
    ) == (0,)
    assert one("SELECT count(*) FROM crm_activity WHERE checkout_at < occurred_at OR received_at < occurred_at") == (0,)
    assert one(
        "SELECT count(*) FROM crm_activity WHERE occurred_at >= date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') "
        "AT TIME ZONE 'Asia/Shanghai' OR occurred_at < now() - interval '367 days'"
    ) == (0,)
    # Events: a grid, a title, an account manager of the grid; attendance rows name a merchant of
    # the grid or a person (one or the other, as activity_log writes them).
    assert one(
        """
        SELECT count(*) FROM crm_activity a WHERE a.kind = 'event' AND (a.merchant_id IS NOT NULL OR a.title = ''
            OR a.event_type = '' OR NOT EXISTS (SELECT 1 FROM grids_membership ms WHERE ms.user_id = a.by_id
                                               AND ms.grid_id = a.grid_id AND ms.role = 'account_manager'))
        """
    ) == (0,)
    assert one("SELECT count(*) FROM crm_eventattendance WHERE merchant_id IS NOT NULL AND person_id IS NOT NULL") == (
        0,
    )
    assert one(
        """
        SELECT count(*) FROM crm_eventattendance e JOIN crm_activity a ON a.id = e.activity_id
        JOIN crm_merchant m ON m.id = e.merchant_id WHERE m.grid_id <> a.grid_id OR a.kind <> 'event'
        """
    ) == (0,)
    assert one("SELECT count(*) FROM crm_eventattendance WHERE person_id IS NOT NULL")[0] > 0
    # A stage change's activity is about the lead's merchant, at the same moment.
    linked, bad = one(
        """
        SELECT count(*), count(*) FILTER (WHERE a.merchant_id <> l.merchant_id OR a.occurred_at <> sc.at)
        FROM crm_leadstagechange sc JOIN crm_lead l ON l.id = sc.lead_id JOIN crm_activity a ON a.id = sc.activity_id
        """
    )
    assert linked > 0 and bad == 0
    assert one(
        "SELECT count(*) FROM crm_leadstagechange sc JOIN crm_activity a ON a.id = sc.activity_id "
        "WHERE sc.to_stage = 'visited' AND a.kind <> 'visit'"
    ) == (0,)


def test_open_tasks_for_account_managers(demo):
    today = timezone.localdate()
    open_tasks = list(Task.objects.filter(status="open").select_related("activity", "merchant"))
    assert open_tasks
    due_today = [t for t in open_tasks if timezone.localtime(t.due_at).date() == today]
    overdue = [t for t in open_tasks if timezone.localtime(t.due_at).date() < today]
    later = [t for t in open_tasks if timezone.localtime(t.due_at).date() > today]
    assert due_today and overdue and later
    for t in open_tasks:
        assert t.owner_id == t.merchant.owner_id
        assert t.title == t.activity.next_step and t.title
        assert t.due_at > t.activity.occurred_at
        assert t.done_at is None
    assert Task.objects.filter(status="done", done_at__isnull=True).count() == 0
    # Every account manager with open tasks has one due today; the demo login "am" has some.
    owners = {t.owner_id for t in open_tasks}
    assert owners == {t.owner_id for t in due_today}
    assert any(t.owner.username == "am" for t in due_today)


def test_no_audit_rows_for_leads_and_activities(demo):
    assert one("SELECT count(*) FROM crm_leadevent") == (0,)
    assert one("SELECT count(*) FROM crm_activityevent") == (0,)
    assert one("SELECT count(*) FROM pg_trigger WHERE tgenabled = 'D' AND NOT tgisinternal") == (0,)


def test_fill_adds_missing_steps_identically(demo):
    seed(reset=True)  # ids from 1 (sequences are not rolled back between tests)
    full = account_checksum()
    # A database seeded before the account steps existed: city and merchants only.
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {ACCOUNT_TABLES} RESTART IDENTITY CASCADE")
    assert Lead.objects.count() == 0
    out = seed(fill=True)
    assert "kept       city, staff and merchants" in out and "activities" in out
    assert account_checksum() == full
    # Only empty steps run: with tasks gone, only tasks come back.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE crm_task RESTART IDENTITY CASCADE")
    out = seed(fill=True)
    assert "  tasks " in out and "  activities " not in out
    assert account_checksum() == full
    assert "nothing to fill" in seed(fill=True)


def test_reset_empties_account_tables_keeps_reference_lists(demo):
    reasons, industries = LostReason.objects.count(), one("SELECT count(*) FROM crm_industry")[0]
    assert reasons > 0 and industries > 0
    seed(reset=True, merchants=300)
    assert LostReason.objects.count() == reasons
    assert one("SELECT count(*) FROM crm_industry")[0] == industries
    # Everything was rebuilt for the 300 merchants (nothing left from the 800).
    ids = set(Merchant.objects.values_list("id", flat=True))
    assert set(Lead.objects.values_list("merchant_id", flat=True)) <= ids
    assert set(Activity.objects.exclude(merchant=None).values_list("merchant_id", flat=True)) <= ids
    assert one("SELECT min(id) FROM crm_activity") == (1,)
    assert one("SELECT min(id) FROM crm_person") == (1,)
