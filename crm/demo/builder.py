"""Demo data for gridcrm: a city around Hangzhou with branches, grids, places, staff and merchants.

``load_demo(scale="M", seed=1)`` runs the steps of ``DemoBuilder.STEPS`` in one transaction:

  org        branches and sub-branches; their areas are Voronoi cells (PostGIS) of their centres
  grids      grids tessellate each sub-branch: Voronoi cells of seed points clipped to it
  places     parks, markets, business districts, communities, villages; grid from point-on-surface
  people     demo logins, branch managers, grid leaders, account managers and their memberships
  merchants  COPY into a temp table, one INSERT ... SELECT that sets grid (GRID_OF_LOCATION_SQL)
             and owner (an account manager of that grid)
  persons, relations, products, leads, activities, tasks
             the accounts around the merchants (issue 4): see ``crm.demo.accounts``
  finish     ANALYZE

Deterministic: every step draws from its own generator seeded with (seed, step name), so adding a
step later (activities, leads) leaves the earlier steps' data unchanged. Geometry is computed by
PostGIS from the seeded points, so the same seed gives the same rows on the same PostGIS build.
The account steps date their rows relative to today (the last 12 months), so they repeat exactly
within a day.

``load_demo(fill=True)`` (``seed_demo --fill``) runs only the account steps whose table is still
empty, on a database whose city and merchants were loaded before those steps existed.

Audit triggers (django-pghistory) are disabled on the loaded tables for the load (it is an
initial load, not an edit) and re-enabled in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from django.apps import apps
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone
from faker import Faker

from crm.demo import names as N
from crm.demo.accounts import ACCOUNT_STEPS, ACCOUNT_TABLES, AccountSteps
from crm.demo.common import (
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON,
    _audit_triggers,
    _bulk_load,
    _copy,
    _execute,
    _fetchall,
    _temp_table,
    table_is_empty,
)
from crm.validators import CREDIT_CODE_ALPHABET, CREDIT_CODE_WEIGHTS, credit_code_check_char

DEMO_PASSWORD = "demo1234"
REGION = (120.0, 30.1, 120.4, 30.45)  # lon_min, lat_min, lon_max, lat_max
REGION_SQL = "ST_MakeEnvelope(120.0, 30.1, 120.4, 30.45, 4326)"
DATE_FROM, DATE_TO = dt.date(2024, 1, 1), dt.date(2025, 12, 31)


@dataclass(frozen=True)
class Scale:
    name: str
    branches: int
    sub_branches: int
    grids: int
    merchants: int
    places: int
    grids_per_leader: tuple[int, int]  # a grid leader leads lo..hi consecutive grids
    grids_per_am: tuple[int, int] = (1, 5)


SCALES = {
    "S": Scale("S", branches=1, sub_branches=5, grids=60, merchants=5_000, places=300, grids_per_leader=(1, 1)),
    "M": Scale("M", branches=2, sub_branches=40, grids=5_000, merchants=200_000, places=4_000, grids_per_leader=(1, 2)),
    "L": Scale(
        "L", branches=3, sub_branches=60, grids=10_000, merchants=1_000_000, places=8_000, grids_per_leader=(1, 3)
    ),
}

# Known logins (username, role, description); see demo_logins.
DEMO_USERS = ("admin", "region", "midoffice", "manager", "leader", "am")

# Distinct sub-branch colours: Tableau 20, then golden-angle hues.
_PALETTE_WORDS = (
    "#4e79a7 #f28e2b #e15759 #76b7b2 #59a14f #edc948 #b07aa1 #ff9da7 #9c755f #bab0ac "
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf"
)
_BASE_PALETTE = tuple(_PALETTE_WORDS.split())


def palette(n: int) -> list[str]:
    import colorsys

    out = list(dict.fromkeys(_BASE_PALETTE))
    i = 0
    while len(out) < n:
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hls_to_rgb(h, 0.45 + 0.1 * (i % 3), 0.65)
        c = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
        if c not in out:
            out.append(c)
        i += 1
    return out[:n]


class DemoDataExists(Exception):
    pass


# -- Small helpers -----------------------------------------------------------------------------


def _km(lon, lat, origin=N.DOWNTOWN):
    """Distance in km from ``origin`` (equirectangular; fine at city scale). Vectorised."""
    return np.hypot((np.asarray(lon) - origin[0]) * KM_PER_DEG_LON, (np.asarray(lat) - origin[1]) * KM_PER_DEG_LAT)


def sample_points(rng: np.random.Generator, n: int, *, weights, sigma_km=(4.0, 2.0), accept=None) -> np.ndarray:
    """``n`` points in REGION from a mixture: downtown gaussian, secondary-centre gaussians, uniform.
    ``accept(lon, lat) -> bool mask`` rejects some (e.g. parks away from downtown)."""
    x0, y0, x1, y1 = REGION
    centres = np.array(N.SUB_CENTRES)
    out = np.empty((0, 2))
    while len(out) < n:
        m = int((n - len(out)) * 1.5) + 32
        comp = rng.choice(3, size=m, p=np.asarray(weights, dtype=float) / sum(weights))
        pts = np.column_stack([rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)])
        noise = rng.standard_normal((m, 2))
        sig = np.where(comp == 0, sigma_km[0], sigma_km[1])[:, None] * noise
        offs = np.column_stack([sig[:, 0] / KM_PER_DEG_LON, sig[:, 1] / KM_PER_DEG_LAT])
        which = centres[rng.integers(0, len(centres), m)]
        pts = np.where((comp == 0)[:, None], np.array(N.DOWNTOWN) + offs, pts)
        pts = np.where((comp == 1)[:, None], which + offs, pts)
        ok = (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)
        if accept is not None:
            ok &= accept(pts[:, 0], pts[:, 1])
        out = np.vstack([out, pts[ok]])
    return np.round(out[:n], 7)


def star_polygon_wkt(rng: np.random.Generator, lon: float, lat: float, radius_m: float) -> str:
    """A simple (star-shaped, hence valid) polygon of about ``radius_m`` around a point."""
    k = int(rng.integers(7, 13))
    ang = (np.arange(k) + rng.uniform(0.1, 0.9, k)) * (2 * np.pi / k)  # strictly increasing in [0, 2pi)
    rad = radius_m * rng.uniform(0.6, 1.15, k)
    xs = lon + rad * np.cos(ang) / (KM_PER_DEG_LON * 1000)
    ys = lat + rad * np.sin(ang) / (KM_PER_DEG_LAT * 1000)
    ring = [f"{x:.7f} {y:.7f}" for x, y in zip(xs, ys, strict=True)]
    return f"POLYGON(({', '.join(ring + ring[:1])}))"


def chunks(items: list, rng: np.random.Generator, lo: int, hi: int, first: int | None = None) -> list[list]:
    """Split ``items`` (in order) into consecutive chunks of random size lo..hi."""
    out, i = [], 0
    while i < len(items):
        size = first if (first is not None and not out) else int(rng.integers(lo, hi + 1))
        out.append(items[i : i + size])
        i += size
    return out


def probs(weights: dict[str, float], codes: list[str]) -> np.ndarray:
    w = np.array([weights.get(c, 0.0) for c in codes], dtype=float)
    return w / w.sum()


def credit_codes(rng: np.random.Generator, kinds: np.ndarray) -> list[str]:
    """Valid, unique 统一社会信用代码: 9 + type (1 enterprise, 2 individual, 3 cooperative) + Hangzhou
    division + GB 11714 organisation code (8 digits + its check digit) + GB 32100 check char.
    ``kinds`` holds '1', '2' or '3' per code."""
    n = len(kinds)
    if n == 0:
        return []
    body = np.empty(0, dtype=np.int64)
    while len(body) < n:  # unique 8-digit organisation-code bodies, in draw order
        extra = rng.integers(10_000_000, 100_000_000, size=int((n - len(body)) * 1.1) + 8)
        merged = np.concatenate([body, extra])
        _, first = np.unique(merged, return_index=True)
        body = merged[np.sort(first)]
    body = body[:n]
    digits = (body[:, None] // (10 ** np.arange(7, -1, -1))) % 10  # n x 8
    c9 = 11 - (digits @ np.array([3, 7, 9, 10, 5, 8, 4, 2])) % 11
    c9_idx = np.where(c9 == 11, 0, c9)  # 10 -> 'X' handled below
    div = np.array([[int(ch) for ch in d] for d in N.HANGZHOU_DIVISIONS])[rng.integers(0, len(N.HANGZHOU_DIVISIONS), n)]
    alpha = {c: i for i, c in enumerate(CREDIT_CODE_ALPHABET)}
    first17 = np.column_stack(
        [
            np.full(n, 9),
            np.array([int(k) for k in kinds]),
            div,
            digits,
            np.where(c9 == 10, alpha["X"], c9_idx),
        ]
    )
    total = first17 @ np.array(CREDIT_CODE_WEIGHTS)
    check = (31 - total % 31) % 31
    chars = np.array(list(CREDIT_CODE_ALPHABET))
    codes = ["".join(row) for row in chars[np.column_stack([first17, check])]]
    for code in codes[:50]:  # same rule as the form validator
        assert credit_code_check_char(code[:17]) == code[17], code
    return codes


# Reference lists seeded by migrations survive --reset. A model opts in by declaring
# scope_path = "reference" (as crm.Industry does) or by being listed here.
KEEP_ON_RESET = {"crm.Industry"}


def domain_models():
    """Models of the project's own apps, except reference lists (seeded by migrations)."""
    base = str(settings.BASE_DIR)
    out = []
    for cfg in apps.get_app_configs():
        if not cfg.path.startswith(base) or "/.venv/" in cfg.path or "site-packages" in cfg.path:
            continue
        for m in cfg.get_models():
            if m._meta.label in KEEP_ON_RESET or getattr(m, "scope_path", None) == "reference":
                continue
            if m._meta.managed and not m._meta.proxy:
                out.append(m)
    return out


def truncate_domain() -> None:
    """Empty the domain tables (org units, grids, people, merchants, their audit events)."""
    from pghistory.models import Context

    tables = sorted({m._meta.db_table for m in domain_models()} | {Context._meta.db_table})
    _execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


# -- The builder -------------------------------------------------------------------------------


@dataclass
class Summary:
    scale: str
    seed: int
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    elapsed: float = 0.0
    skipped: bool = False
    steps: list = field(default_factory=list)


class DemoBuilder(AccountSteps):
    BASE_STEPS = ("org", "grids", "places", "people", "merchants")
    STEPS = (*BASE_STEPS, *ACCOUNT_STEPS, "finish")

    def __init__(self, scale: Scale, seed: int, log: Callable[[str], None] = print):
        self.scale = scale
        self.seed = seed
        self.log = log
        self.today = timezone.localdate()
        # Filled by the steps, read by later steps.
        self.branches: list = []
        self.sub_branches: list = []
        self.places: dict = {}
        self.summary = Summary(scale.name, seed)

    # Each step has its own random streams, so adding a step does not change the others.
    def rng(self, step: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(step.encode())])

    def faker(self, step: str) -> Faker:
        fake = Faker("zh_CN")
        fake.seed_instance(f"{self.seed}-{step}")
        return fake

    def run(self, steps: Iterable[str] | None = None) -> Summary:
        from crm.models import Activity, Lead, Merchant
        from grids.models import Grid, Membership

        steps = tuple(steps or self.STEPS)
        unknown = set(steps) - set(self.STEPS)
        if unknown:
            raise ValueError(f"unknown steps: {sorted(unknown)}")
        self.summary.steps = list(steps)
        t0 = time.perf_counter()
        triggers = _audit_triggers([Grid, Membership, Merchant, Lead, Activity])
        with transaction.atomic():
            _execute("SET LOCAL work_mem = '256MB'")
            _execute("SET LOCAL maintenance_work_mem = '512MB'")
            _execute("SET LOCAL jit = off")  # compile time never pays back here (PERFORMANCE.md)
            # Foreign keys are checked per statement during the load (not queued to commit), so
            # the triggers can be re-enabled below without pending events.
            _execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table, trig in triggers:
                _execute(f'ALTER TABLE {table} DISABLE TRIGGER "{trig}"')
            for step in steps:
                ts = time.perf_counter()
                getattr(self, f"step_{step}")()
                self.summary.timings[step] = round(time.perf_counter() - ts, 2)
                self.log(f"  {step:<10} {self.summary.timings[step]:7.1f} s")
            for table, trig in triggers:
                _execute(f'ALTER TABLE {table} ENABLE TRIGGER "{trig}"')
            _execute("SET CONSTRAINTS ALL DEFERRED")
        self.summary.elapsed = round(time.perf_counter() - t0, 2)
        return self.summary

    def random_dates(self, rng: np.random.Generator, n: int) -> list[dt.date]:
        last = min(DATE_TO, self.today)
        days = rng.integers(0, (last - DATE_FROM).days + 1, n)
        return [DATE_FROM + dt.timedelta(days=int(d)) for d in days]

    # -- org: branches and sub-branches ---------------------------------------------------------
    def step_org(self):
        from grids.models import Branch, SubBranch

        sc, rng = self.scale, self.rng("org")
        sites = N.BRANCH_SITES[: sc.branches]
        if len(sites) < sc.branches:
            raise ValueError(f"at most {len(N.BRANCH_SITES)} branches")
        self.branches = Branch.objects.bulk_create(
            [Branch(name=name, code=f"B{i + 1:02d}") for i, (name, _c) in enumerate(sites)]
        )
        branch_xy = np.array([c for _n, c in sites])

        # Sub-branch centres: each branch's own centre first, the rest spread out (min distance).
        n = max(sc.sub_branches, sc.branches)
        area_km2 = (REGION[2] - REGION[0]) * KM_PER_DEG_LON * (REGION[3] - REGION[1]) * KM_PER_DEG_LAT
        d_min = 0.6 * math.sqrt(area_km2 / n)
        centres = [tuple(c) for c in branch_xy]
        while len(centres) < n:
            for lon, lat in sample_points(rng, 256, weights=(0.45, 0.35, 0.2), sigma_km=(6.0, 3.0)):
                if len(centres) >= n:
                    break
                if all(_km(lon, lat, c) >= d_min for c in centres):
                    centres.append((float(lon), float(lat)))
            d_min *= 0.9
        centres = np.array(centres)
        # Each centre belongs to the nearest branch centre (= the branch's Voronoi cell).
        dist = np.stack([_km(centres[:, 0], centres[:, 1], tuple(b)) for b in branch_xy], axis=1)
        owner = dist.argmin(axis=1)
        order = sorted(range(n), key=lambda i: (owner[i], dist[i, owner[i]]))
        if len(N.SUB_BRANCH_NAMES) < n:
            raise ValueError(f"at most {len(N.SUB_BRANCH_NAMES)} sub-branches")
        colours = palette(n)
        from django.contrib.gis.geos import Point

        self.sub_branches = SubBranch.objects.bulk_create(
            [
                SubBranch(
                    branch=self.branches[owner[i]],
                    name=f"{N.SUB_BRANCH_NAMES[j]}支行",
                    code=f"S{j + 1:03d}",
                    location=Point(*centres[i], srid=4326),
                    color=colours[j],
                )
                for j, i in enumerate(order)
            ]
        )

        # Areas (kept in temp tables for the later steps): Voronoi of branch centres in the region,
        # then of each branch's sub-branch centres in the branch's area.
        _temp_table("demo_area_pts", "gid int, key int, geom geometry(Point, 4326)")
        _temp_table("demo_area_parent", "gid int, geom geometry(Polygon, 4326)")
        _execute(f"INSERT INTO demo_area_parent VALUES (0, {REGION_SQL})")
        for b, (lon, lat) in zip(self.branches, branch_xy, strict=True):
            _execute(
                "INSERT INTO demo_area_pts VALUES (0, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))", [b.pk, lon, lat]
            )
        _voronoi_partition("demo_area_pts", "demo_area_parent", "demo_branch_area")

        _execute("TRUNCATE demo_area_pts")
        _execute(
            "INSERT INTO demo_area_pts SELECT branch_id, id, location FROM grids_subbranch WHERE id = ANY(%s)",
            [[s.pk for s in self.sub_branches]],
        )
        _temp_table("demo_area_parent2", "gid int, geom geometry(MultiPolygon, 4326)")
        _execute("INSERT INTO demo_area_parent2 SELECT key, geom FROM demo_branch_area")
        _voronoi_partition("demo_area_pts", "demo_area_parent2", "demo_sb_area")
        _execute("CREATE INDEX ON demo_sb_area USING gist (geom)")
        _execute("ANALYZE demo_sb_area")
        self.summary.counts["branches"] = len(self.branches)
        self.summary.counts["sub_branches"] = len(self.sub_branches)

    # -- grids: Voronoi tessellation of each sub-branch ----------------------------------------
    def step_grids(self):
        sc, rng = self.scale, self.rng("grids")
        n_extra = max(sc.grids - len(self.sub_branches), 0)
        pts = sample_points(rng, n_extra, weights=(0.35, 0.3, 0.35), sigma_km=(5.0, 2.5))
        sb_xy = np.array([s.location.coords for s in self.sub_branches])
        seeds = np.vstack([sb_xy, pts]) if n_extra else sb_xy
        r = _km(seeds[:, 0], seeds[:, 1])
        kinds = np.where(
            r < 4,
            rng.choice(["business_district", "community", "mixed"], len(r), p=[0.45, 0.3, 0.25]),
            np.where(
                r < 10,
                rng.choice(
                    ["community", "mixed", "business_district", "park", "market"],
                    len(r),
                    p=[0.35, 0.3, 0.15, 0.1, 0.1],
                ),
                rng.choice(
                    ["agricultural", "park", "market", "community", "mixed"], len(r), p=[0.3, 0.2, 0.15, 0.2, 0.15]
                ),
            ),
        )
        _temp_table("demo_seed", "k int, lon float8, lat float8, kind text")
        _copy(
            "demo_seed",
            ["k", "lon", "lat", "kind"],
            zip(range(len(seeds)), seeds[:, 0].tolist(), seeds[:, 1].tolist(), kinds.tolist(), strict=True),
        )
        # Seed -> sub-branch whose area holds it (lowest id on a shared edge).
        _execute("DROP TABLE IF EXISTS pg_temp.demo_area_pts")
        _execute(
            """
            CREATE TEMP TABLE demo_area_pts AS
            SELECT DISTINCT ON (s.k) a.key AS gid, s.k AS key, ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326) AS geom
            FROM demo_seed s JOIN demo_sb_area a
              ON ST_Intersects(a.geom, ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326))
            ORDER BY s.k, a.key
            """
        )
        _temp_table("demo_area_parent3", "gid int, geom geometry(MultiPolygon, 4326)")
        _execute("INSERT INTO demo_area_parent3 SELECT key, geom FROM demo_sb_area")
        _voronoi_partition("demo_area_pts", "demo_area_parent3", "demo_grid_cell")
        # Number grids within a sub-branch from its outlet outwards: 第1网格 holds the outlet.
        n = _execute(
            """
            INSERT INTO grids_grid (sub_branch_id, name, code, kind, status, geom, ownership_rule, version)
            SELECT c.gid, sb.name || '-第' || c.n || '网格', sb.code || '-' || lpad(c.n::text, 4, '0'),
                   s.kind, 'active', c.geom, 'leader', 1
            FROM (
                SELECT c.*, row_number() OVER (
                    PARTITION BY c.gid ORDER BY ST_Distance(ST_Centroid(c.geom), sb.location), c.key) AS n
                FROM demo_grid_cell c JOIN grids_subbranch sb ON sb.id = c.gid
                WHERE NOT ST_IsEmpty(c.geom)
            ) c
            JOIN grids_subbranch sb ON sb.id = c.gid
            JOIN demo_seed s ON s.k = c.key
            ORDER BY c.gid, c.n
            """
        )
        # Version 1 of every grid, as grid_create writes it (the territory page lists versions).
        _execute(
            """
            INSERT INTO grids_gridversion (grid_id, number, geom, name, code, kind, status, created_at, note)
            SELECT id, 1, geom, name, code, kind, status, now(), 'demo data' FROM grids_grid
            """
        )
        _execute("ANALYZE grids_grid")
        self.summary.counts["grids"] = n

    # -- places ---------------------------------------------------------------------------------
    def step_places(self):
        sc, rng, fake = self.scale, self.rng("places"), self.faker("places")
        n_total = sc.places
        spec = [  # kind, share, types, location mixture, accept, (polygon share, radius range m)
            ("park", 0.08, N.PARK_TYPES, (0.15, 0.45, 0.4), lambda x, y: _km(x, y) > 3, (1.0, (250, 900))),
            ("market", 0.10, N.MARKET_TYPES, (0.2, 0.4, 0.4), None, (0.7, (60, 200))),
            ("business_district", 0.15, N.BUSINESS_DISTRICT_TYPES, (0.6, 0.3, 0.1), None, (1.0, (150, 450))),
            ("community", 0.45, N.COMMUNITY_TYPES, (0.5, 0.3, 0.2), None, (0.6, (120, 350))),
            ("village", 0.22, N.VILLAGE_TYPES, (0.0, 0.2, 0.8), lambda x, y: _km(x, y) > 10, (0.3, (200, 500))),
        ]
        prefixes = [a + b for a in N.PLACE_SYLLABLES_1 for b in N.PLACE_SYLLABLES_2 if a != b]
        rows, meta = [], []
        for kind, share, types, mix, accept, (poly_share, (r_lo, r_hi)) in spec:
            n = max(1, round(n_total * share))
            xy = sample_points(rng, n, weights=mix, sigma_km=(4.0, 2.0), accept=accept)
            type_idx = rng.integers(0, len(types), n)
            pick = rng.permutation(len(prefixes))
            for i in range(n):
                prefix = prefixes[pick[i % len(pick)]] + ("" if i < len(pick) else fake.last_name())
                suffix = types[type_idx[i]][0]
                name = f"{prefix}{suffix}"
                radius = float(rng.uniform(r_lo, r_hi))
                lon, lat = float(xy[i, 0]), float(xy[i, 1])
                if rng.random() < poly_share:
                    wkt = star_polygon_wkt(rng, lon, lat, radius)
                else:
                    wkt = f"POINT({lon:.7f} {lat:.7f})"
                rows.append((name, kind, wkt))
                meta.append((kind, int(type_idx[i]), lon, lat, radius, name))
        ids = sorted(
            r[0]
            for r in _fetchall(
                "SELECT nextval(pg_get_serial_sequence('grids_place', 'id')) FROM generate_series(1, %s)", [len(rows)]
            )
        )
        _temp_table("demo_place", "id bigint, name text, kind text, wkt text")
        _copy("demo_place", ["id", "name", "kind", "wkt"], ((i, *r) for i, r in zip(ids, rows, strict=True)))
        _execute(
            f"""
            INSERT INTO grids_place (id, name, kind, geom, grid_id)
            SELECT p.id, p.name, p.kind, shape.geom,
                   {_grid_of("ST_PointOnSurface(shape.geom)")}
            FROM demo_place p CROSS JOIN LATERAL (SELECT ST_GeomFromText(p.wkt, 4326) AS geom) shape
            ORDER BY p.id
            """
        )
        _execute("DROP TABLE pg_temp.demo_place")
        self.places = {
            "id": np.array(ids),
            "kind": np.array([m[0] for m in meta]),
            "type": np.array([m[1] for m in meta]),
            "lon": np.array([m[2] for m in meta]),
            "lat": np.array([m[3] for m in meta]),
            "radius": np.array([m[4] for m in meta]),
            "name": [m[5] for m in meta],
        }
        self.summary.counts["places"] = len(rows)

    # -- people: logins, staff, memberships ---------------------------------------------------
    def step_people(self):
        from grids.models import Membership, User

        sc, rng, fake = self.scale, self.rng("people"), self.faker("people")
        password = make_password(DEMO_PASSWORD)  # hashed once, reused: a demo, not a vault
        grids_by_sb: dict[int, list[int]] = {}
        for gid, sb_id in _fetchall("SELECT id, sub_branch_id FROM grids_grid ORDER BY sub_branch_id, id"):
            grids_by_sb.setdefault(sb_id, []).append(gid)

        users: list[User] = []
        memberships: list[tuple[str, str, int]] = []  # (username, role, unit id) -> kind by role

        def user(username: str, **extra) -> str:
            users.append(
                User(username=username, full_name=fake.name(), password=password, email="", is_active=True, **extra)
            )
            return username

        user("admin", is_superuser=True, is_staff=True)
        for i, b in enumerate(self.branches):
            memberships.append((user("region" if i == 0 else f"rh{i + 1:02d}"), "regional_head", b.pk))
            memberships.append((user("midoffice" if i == 0 else f"mo{i + 1:02d}"), "mid_office", b.pk))
        n_gl = n_am = 0
        first_sb = self.sub_branches[0].pk
        for j, sb in enumerate(self.sub_branches):
            memberships.append((user("manager" if j == 0 else f"bm{j + 1:03d}"), "branch_manager", sb.pk))
            grids = grids_by_sb.get(sb.pk, [])
            lo, hi = sc.grids_per_leader
            # The demo "leader" leads exactly the first grid of the first sub-branch.
            for c, chunk in enumerate(chunks(grids, rng, lo, hi, first=1 if sb.pk == first_sb else None)):
                if sb.pk == first_sb and c == 0:
                    name = user("leader")
                else:
                    n_gl += 1
                    name = user(f"gl{n_gl:05d}")
                memberships.extend((name, "grid_leader", g) for g in chunk)
            # Every grid gets 1-3 account managers; each AM covers 1-5 grids of this sub-branch.
            k = 1 + (rng.random(len(grids)) < 0.6) + (rng.random(len(grids)) < 0.25)
            for pass_no in (1, 2, 3):
                todo = [g for g, kg in zip(grids, k, strict=True) if kg >= pass_no]
                if pass_no > 1:
                    todo = [todo[i] for i in rng.permutation(len(todo))]
                first = 3 if (sb.pk == first_sb and pass_no == 1 and len(todo) >= 3) else None
                for c, chunk in enumerate(chunks(todo, rng, *sc.grids_per_am, first=first)):
                    if first and c == 0:
                        name = user("am")
                    else:
                        n_am += 1
                        name = user(f"am{n_am:05d}")
                    memberships.extend((name, "account_manager", g) for g in chunk)

        User.objects.bulk_create(users, batch_size=2000)
        ids = dict(User.objects.filter(username__in=[u.username for u in users]).values_list("username", "id"))
        starts = self.random_dates(rng, len(memberships))
        unit = {"regional_head": "branch_id", "mid_office": "branch_id", "branch_manager": "sub_branch_id"}
        Membership.objects.bulk_create(
            [
                Membership(user_id=ids[u], role=role, start_date=start, **{unit.get(role, "grid_id"): pk})
                for (u, role, pk), start in zip(memberships, starts, strict=True)
            ],
            batch_size=5000,
        )
        self.summary.counts["users"] = len(users)
        self.summary.counts["memberships"] = len(memberships)
        self.summary.counts["account_managers"] = n_am + 1
        self.summary.counts["grid_leaders"] = n_gl + 1

    # -- merchants ------------------------------------------------------------------------------
    def step_merchants(self):
        sc, rng, fake = self.scale, self.rng("merchants"), self.faker("merchants")
        n = sc.merchants
        P = self.places
        industries = dict(_fetchall("SELECT code, id FROM crm_industry"))
        codes = [c for c in N.SCATTERED_INDUSTRIES if c in industries] or list(industries)

        # 60 % clustered around parks, markets and business districts; the rest scattered.
        clusterable = np.flatnonzero(np.isin(P["kind"], ["park", "market", "business_district"]))
        n_cl = int(round(n * 0.6)) if len(clusterable) else 0
        base = np.select(
            [P["kind"][clusterable] == "park", P["kind"][clusterable] == "market"], [3.0, 2.5], default=2.0
        )
        w = base * rng.lognormal(0.0, 0.7, len(clusterable))
        which = clusterable[rng.choice(len(clusterable), size=n_cl, p=w / w.sum())] if n_cl else np.empty(0, int)
        sigma_m = np.select(
            [P["kind"] == "park", P["kind"] == "market"],
            [np.clip(0.5 * P["radius"], 80, 300), np.clip(0.6 * P["radius"], 30, 120)],
            default=np.clip(0.6 * P["radius"], 60, 300),
        )
        off = rng.standard_normal((n_cl, 2)) * sigma_m[which][:, None] / 1000.0
        cl_lon = P["lon"][which] + off[:, 0] / KM_PER_DEG_LON
        cl_lat = P["lat"][which] + off[:, 1] / KM_PER_DEG_LAT
        eps = 1e-6
        cl_lon = np.clip(cl_lon, REGION[0] + eps, REGION[2] - eps)
        cl_lat = np.clip(cl_lat, REGION[1] + eps, REGION[3] - eps)
        sc_xy = sample_points(rng, n - n_cl, weights=(0.5, 0.3, 0.2), sigma_km=(3.5, 2.0))
        lon = np.round(np.concatenate([cl_lon, sc_xy[:, 0]]), 7)
        lat = np.round(np.concatenate([cl_lat, sc_xy[:, 1]]), 7)

        # Industry: by the place's type for clustered merchants, by distance for the others.
        ind = np.empty(n, dtype=np.int64)
        types_by_kind = {
            "park": N.PARK_TYPES,
            "market": N.MARKET_TYPES,
            "business_district": N.BUSINESS_DISTRICT_TYPES,
        }
        cl_kind, cl_type = P["kind"][which], P["type"][which]
        for kind, types in types_by_kind.items():
            for t, (_suffix, weights) in enumerate(types):
                mask = np.flatnonzero((cl_kind == kind) & (cl_type == t))
                if len(mask):
                    ind[mask] = rng.choice(len(codes), size=len(mask), p=probs(weights, codes))
        far = _km(sc_xy[:, 0], sc_xy[:, 1]) > 12
        ind_sc = np.where(
            far,
            rng.choice(len(codes), size=len(far), p=probs(N.OUTSKIRTS_INDUSTRIES, codes)),
            rng.choice(len(codes), size=len(far), p=probs(N.SCATTERED_INDUSTRIES, codes)),
        )
        ind[n_cl:] = ind_sc

        # Names: [杭州] + brand + trade word + legal form.
        brands = self._brand_pool(fake)
        trade_flat, offset, count = [], {}, {}
        for c in codes:
            words = N.TRADE_WORDS.get(c, N.TRADE_WORDS["other"])
            offset[c], count[c] = len(trade_flat), len(words)
            trade_flat.extend(words)
        off_arr = np.array([offset[c] for c in codes])[ind]
        cnt_arr = np.array([count[c] for c in codes])[ind]
        trade_idx = off_arr + (rng.random(n) * cnt_arr).astype(np.int64)
        brand_idx = rng.integers(0, len(brands), n)
        is_company = rng.random(n) < 0.55
        hz = rng.random(n) < 0.5
        company_form = rng.integers(0, len(N.COMPANY_FORMS), n)
        sole_form = rng.integers(0, len(N.SOLE_FORMS), n)
        trade_is_coop = np.array([w.endswith(N.COOP_MARK) for w in trade_flat])[trade_idx]
        kind_code = np.where(trade_is_coop, "3", np.where(is_company, "1", "2"))
        names = [
            (("杭州" if h else "") + brands[b] + trade_flat[t] + N.COMPANY_FORMS[cf])
            if kc == "1"
            else (brands[b] + trade_flat[t] + ("" if kc == "3" else N.SOLE_FORMS[sf]))
            for b, t, h, cf, sf, kc in zip(
                brand_idx.tolist(),
                trade_idx.tolist(),
                hz.tolist(),
                company_form.tolist(),
                sole_form.tolist(),
                kind_code.tolist(),
                strict=True,
            )
        ]

        # ~40 % carry a valid, unique credit code.
        has_code = rng.random(n) < 0.4
        cc = np.full(n, None, dtype=object)
        cc[has_code] = credit_codes(rng, kind_code[has_code])

        # Addresses: the place's for clustered merchants, a street for the others.
        roads = list(dict.fromkeys(fake.city_name() + fake.random_element(N.ROAD_SUFFIXES) for _ in range(600)))
        road_idx = rng.integers(0, len(roads), n)
        num = rng.integers(1, 800, n)
        building = rng.integers(1, 25, n)
        room = rng.integers(101, 1220, n)
        zone = np.array(list("ABCDEFGH"))[rng.integers(0, 8, n)]
        addr = []
        place_names = P["name"]
        for i in range(n):
            if i < n_cl:
                p = which[i]
                if P["kind"][p] == "market":
                    addr.append(f"杭州市{place_names[p]}{zone[i]}区{num[i]}号")
                else:
                    addr.append(f"杭州市{place_names[p]}{building[i]}幢{room[i]}室")
            else:
                addr.append(f"杭州市{roads[road_idx[i]]}{num[i]}号")

        status = np.array(["prospect", "customer", "dormant", "closed"])[
            rng.choice(4, size=n, p=[0.55, 0.30, 0.10, 0.05])
        ]
        t_from = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
        t_to = min(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), timezone.now()).timestamp()
        created = rng.integers(int(t_from), int(t_to), n)
        pick = rng.random(n)
        place_id = np.concatenate([P["id"][which], np.zeros(n - n_cl, dtype=np.int64)])
        industry_id = np.array([industries[c] for c in codes])[ind]

        _temp_table(
            "demo_merchant",
            "k int, name text, credit_code text, industry_id bigint, lon float8, lat float8, address text, "
            "place_id bigint, status text, created_s bigint, pick float8",
        )
        _copy(
            "demo_merchant",
            [
                "k",
                "name",
                "credit_code",
                "industry_id",
                "lon",
                "lat",
                "address",
                "place_id",
                "status",
                "created_s",
                "pick",
            ],
            zip(
                range(n),
                names,
                cc.tolist(),
                industry_id.tolist(),
                lon.tolist(),
                lat.tolist(),
                addr,
                [p or None for p in place_id.tolist()],
                status.tolist(),
                created.tolist(),
                pick.tolist(),
                strict=True,
            ),
        )
        # Account managers per grid, numbered 0..n-1, for the owner pick.
        _execute("DROP TABLE IF EXISTS pg_temp.demo_grid_am")
        _execute(
            """
            CREATE TEMP TABLE demo_grid_am AS
            SELECT grid_id, user_id,
                   (row_number() OVER (PARTITION BY grid_id ORDER BY user_id) - 1)::int AS idx,
                   count(*) OVER (PARTITION BY grid_id)::int AS n
            FROM grids_membership WHERE role = 'account_manager' AND grid_id IS NOT NULL
            """
        )
        _execute("ANALYZE demo_merchant")
        _execute("ANALYZE demo_grid_am")
        # The grid lookup is materialised first, so it runs once per merchant (not again in the join).
        with _bulk_load("crm_merchant"):
            inserted = _execute(
                f"""
                WITH s AS MATERIALIZED (
                    SELECT d.*, l.location, {_grid_of("l.location")} AS grid_id
                    FROM demo_merchant d
                    CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(d.lon, d.lat), 4326) AS location) l
                )
                INSERT INTO crm_merchant (name, credit_code, industry_id, location, address, place_id,
                                          grid_id, owner_id, status, created_at, updated_at, assignment_locked,
                                          version)
                SELECT s.name, s.credit_code, s.industry_id, s.location, s.address, s.place_id,
                       s.grid_id, am.user_id, s.status, to_timestamp(s.created_s), to_timestamp(s.created_s),
                       false, 1
                FROM s
                LEFT JOIN demo_grid_am am ON am.grid_id = s.grid_id AND am.idx = floor(s.pick * am.n)::int
                ORDER BY s.k
                """
            )
        _execute("DROP TABLE pg_temp.demo_merchant")
        _execute("DROP TABLE pg_temp.demo_grid_am")
        self.summary.counts["merchants"] = inserted
        self.summary.counts["merchants_clustered"] = n_cl
        self.summary.counts["merchants_with_credit_code"] = int(has_code.sum())

    def _brand_pool(self, fake: Faker) -> list[str]:
        from faker.providers.company.zh_CN import Provider

        skip = ("公司", "计算机", "软件", "电子", "信息", "科技", "电脑", "数字", "济南", "黄石", "襄樊", "开发区")
        prefixes = dict.fromkeys(Provider.company_prefixes)
        pool = [p for p in prefixes if not p.isascii() and not any(s in p for s in skip)]
        syll = "鑫盛恒瑞隆达华宏信诚源丰泰嘉永利兴昌福鼎晟悦禾优美佳新旺汇众金锦万合益康顺"
        pool += [a + b for a in syll for b in syll if a != b]
        surnames = list(dict.fromkeys(fake.last_name() for _ in range(300)))
        pool += [f"{s}记" for s in surnames] + [f"老{s}" for s in surnames]
        return pool

    # -- finish ---------------------------------------------------------------------------------
    def step_finish(self):
        for table in ("grids_branch", "grids_subbranch", "grids_grid", "grids_place", "grids_user"):
            _execute(f"ANALYZE {table}")
        _execute("ANALYZE grids_membership")
        _execute("ANALYZE crm_merchant")
        for table in ACCOUNT_TABLES:
            _execute(f"ANALYZE {table}")
        for name in ("demo_area_pts", "demo_area_parent", "demo_area_parent2", "demo_area_parent3"):
            _execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        for name in ("demo_branch_area", "demo_sb_area", "demo_grid_cell", "demo_seed"):
            _execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        # What the beat task would do within ten minutes: reports read whole months from it.
        from crm.services.funnel_rollup import funnel_rollup_rebuild

        funnel_rollup_rebuild()


def _grid_of(loc: str) -> str:
    from crm.services import GRID_OF_LOCATION_SQL

    return GRID_OF_LOCATION_SQL.format(loc=loc)


def _voronoi_partition(points: str, parents: str, out: str) -> None:
    """``out(gid, key, geom)``: for each parent polygon ``gid``, the Voronoi cells of its points
    (``points(gid, key, geom)``) clipped to it. Cells tile the parent without overlaps."""
    _execute(f"DROP TABLE IF EXISTS pg_temp.{out}")
    _execute(
        f"""
        CREATE TEMP TABLE {out} AS
        WITH groups AS (
            SELECT gid, count(*) AS n, ST_Collect(geom ORDER BY key) AS pts FROM {points} GROUP BY gid
        ), cells AS (
            SELECT g.gid, (ST_Dump(ST_VoronoiPolygons(g.pts, 0, ST_Expand(a.geom, 0.05)))).geom AS cell
            FROM groups g JOIN {parents} a ON a.gid = g.gid
            WHERE g.n > 1
        ), clipped AS (
            SELECT p.gid, p.key, ST_Intersection(c.cell, a.geom) AS geom
            FROM cells c
            JOIN {points} p ON p.gid = c.gid AND ST_Contains(c.cell, p.geom)
            JOIN {parents} a ON a.gid = c.gid
            UNION ALL
            SELECT p.gid, p.key, a.geom
            FROM groups g JOIN {points} p ON p.gid = g.gid JOIN {parents} a ON a.gid = g.gid
            WHERE g.n = 1
        )
        SELECT gid, key, ST_Multi(ST_CollectionExtract(ST_MakeValid(geom), 3))::geometry(MultiPolygon, 4326) AS geom
        FROM clipped
        """
    )


# -- Entry point ---------------------------------------------------------------------------------


def has_data() -> bool:
    from crm.models import Merchant
    from grids.models import Branch, Grid

    return Branch.objects.exists() or Grid.objects.exists() or Merchant.objects.exists()


def load_demo(
    *,
    scale: str = "S",
    seed: int = 1,
    reset: bool = False,
    if_empty: bool = False,
    fill: bool = False,
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
) -> Summary:
    """Load the demo city. ``if_empty``: skip when a branch exists. ``fill``: on an empty database
    load everything; on a loaded one run only the account steps (persons ... tasks) whose table is
    still empty, reading the merchants, grids and staff already there (use the seed the database
    was loaded with). Otherwise existing data is an error unless ``reset`` (which empties the
    domain tables first, in the same transaction)."""
    from crm.models import Merchant
    from grids.models import Branch

    spec = SCALES[scale]
    if overrides:
        spec = replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    if if_empty and Branch.objects.exists():
        return Summary(scale, seed, skipped=True)
    with transaction.atomic():
        steps = None
        if has_data():
            if fill and not reset:
                if not Merchant.objects.exists():
                    raise DemoDataExists(
                        "--fill adds the account steps to a database that holds merchants; this one holds "
                        "branches or grids but no merchants. Use --reset to reload everything."
                    )
                steps = [s for s, table in ACCOUNT_STEPS.items() if table_is_empty(table)]
                have = [s for s in ACCOUNT_STEPS if s not in steps]
                log(f"  kept       city, staff and merchants{''.join(', ' + s for s in have)} (already loaded)")
                if not steps:
                    return Summary(scale, seed, skipped=True)
                steps.append("finish")
            elif not reset:
                raise DemoDataExists(
                    "The database already holds branches, grids or merchants. "
                    "Use --reset to replace them with demo data, --if-empty to keep them, "
                    "or --fill to add only what is missing (people, leads, activities ...)."
                )
            else:
                t0 = time.perf_counter()
                truncate_domain()
                log(f"  reset      {time.perf_counter() - t0:7.1f} s")
        return DemoBuilder(spec, seed, log=log).run(steps)
