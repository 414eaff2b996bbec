"""Demo steps after the merchants (issue 4): the people around merchants, relations, products held,
leads with their stage histories, activities with GPS check-ins and events, and follow-up tasks.

  persons     owners / legal representatives (most merchants), shareholders, controllers, contacts;
              some people shared between merchants of one place or grid (chain prospecting), family
              links; Chinese names, 13x/15x/18x mobile numbers, 18-character ID numbers with a
              valid GB 11643 check character
  relations   supply chains inside clusters (a market's wholesalers -> its shops, some to shops
              outside it), guarantees inside a grid, affiliates (merchants sharing an owner)
  products    deposits (most customers), merchant payment, loans (most maturing within 12
              months), credit cards, mortgages, payroll
  leads       ~35 % of merchants in a grid: one lead each, stage history over the last 12 months
              (lead 100 % -> contacted 60 % -> visited 40 % -> interested 20 % -> applied 10 % ->
              approved 7 % -> disbursed 5 %; ~15 % lost with a reason), one LeadStageChange per
              move with the merchant's grid and owner at that time, by = the owner
  activities  ~10 per merchant over 12 months: visits (~50 %, check-in near the merchant, some far
              or inaccurate, distance and flag computed by PostGIS as the service does), calls; the
              stage moves to contacted/visited/... come with their activity (linked); a few
              events per grid with their attendance (merchants, and some owners as people)
  tasks       the latest next step of recent activities as open tasks of the merchant's owner
              (some overdue, some due today, the rest later), older ones done

Each step reads what it needs from the database (merchants, grids, staff, the previous steps'
rows), so it can also run on a database seeded before these steps existed (``seed_demo --fill``).
Every step draws from its own random stream; times are relative to the start of today
(Asia/Shanghai), so the same seed on the same day gives the same rows.

Rows are written the way the services would write them (crm.services.leads / activities), in bulk:
numpy columns COPY'd in binary into temp tables, then one INSERT ... SELECT per table, into tables
whose secondary indexes and foreign keys are dropped and rebuilt around the load (_bulk_load).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from crm.choices import FUNNEL_ORDER
from crm.demo import names as N
from crm.demo.common import (
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON,
    _bulk_load,
    _execute,
    _fetchall,
    copy_arrays,
    reserve_ids,
)

DAY = 86_400

#: The steps added after the merchants, and the table whose emptiness makes ``--fill`` run them.
ACCOUNT_STEPS = {
    "persons": "crm_person",
    "relations": "crm_merchantrelation",
    "products": "crm_productholding",
    "leads": "crm_lead",
    "activities": "crm_activity",
    "tasks": "crm_task",
}
#: Tables the account steps write (ANALYZE'd at the end).
ACCOUNT_TABLES = (
    "crm_person",
    "crm_merchantperson",
    "crm_personrelation",
    "crm_merchantrelation",
    "crm_productholding",
    "crm_lead",
    "crm_leadstagechange",
    "crm_activity",
    "crm_eventattendance",
    "crm_task",
)

STATUSES = ("prospect", "customer", "dormant", "closed")
PRODUCTS = ("deposit", "loan", "merchant_payment", "credit_card", "mortgage", "payroll")
STAGES = (*(str(s) for s in FUNNEL_ORDER), "lost")  # 0..6 the funnel, 7 lost
LOST = 7
ROLES = ("owner", "legal_rep", "shareholder", "controller", "contact")
PERSON_RELATION_KINDS = ("spouse", "parent", "child", "sibling", "relative")
INTENTS = ("high", "medium", "low")
SOURCES = ("stock", "channel", "chain", "other_bank", "cold_visit", "referral")
OUTCOMES = ("reached", "not_reached", "interested", "not_interested", "follow_up")
EVENT_TYPES = ("salon", "park_event", "market_event", "channel_event")
VISIT, CALL, EVENT = 0, 1, 2


# -- Small vectorised helpers ---------------------------------------------------------------------


def pick_in_group(rng: np.random.Generator, keys: np.ndarray, pool: np.ndarray, want: np.ndarray) -> np.ndarray:
    """For each index in ``want``, a random index from ``pool`` with the same ``keys`` value (never
    the index itself), or -1 when there is none."""
    draw = rng.random(len(want))
    out = np.full(len(want), -1, dtype=np.int64)
    if len(pool) == 0 or len(want) == 0:
        return out
    pool = pool[np.argsort(keys[pool], kind="stable")]
    pk, wk = keys[pool], keys[want]
    lo, hi = np.searchsorted(pk, wk, "left"), np.searchsorted(pk, wk, "right")
    ok = hi > lo
    j = np.minimum(lo + (draw * (hi - lo)).astype(np.int64), len(pool) - 1)
    out[ok] = pool[j[ok]]
    out[out == want] = -1
    return out


def choice(rng: np.random.Generator, n: int, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def choice_by_row(rng: np.random.Generator, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per element from the categorical distribution ``table[rows[i]]`` (rows normalised)."""
    cdf = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)[rows]
    u = rng.random(len(rows))[:, None]
    return np.minimum((u > cdf).sum(axis=1), table.shape[1] - 1)


def repeat_positions(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., counts[i]-1 for each i, concatenated (the position inside np.repeat's runs)."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def id_check_index(body: np.ndarray) -> np.ndarray:
    """GB 11643 (ISO 7064 MOD 11-2) check of 17-digit ID bodies: index into "10X98765432"."""
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
    digits = (body[:, None] // (10 ** np.arange(16, -1, -1, dtype=np.int64))) % 10
    return (digits @ weights) % 11


def unique_draws(rng: np.random.Generator, draw, n: int) -> np.ndarray:
    """``n`` distinct values from ``draw(k)`` (int64), keeping the first occurrence of each."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        merged = np.concatenate([out, draw(int((n - len(out)) * 1.05) + 8)])
        _, first = np.unique(merged, return_index=True)
        out = merged[np.sort(first)]
    return out[:n]


def sql_text_array(words) -> list[str]:
    return [str(w) for w in words]


@dataclass
class Merchants:
    """The merchants as numpy columns, in id order (index i <-> id[i])."""

    id: np.ndarray
    grid: np.ndarray  # 0: in no grid
    owner: np.ndarray  # 0: no owner
    sub_branch: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    status: np.ndarray  # index into STATUSES
    place: np.ndarray  # 0: not clustered
    in_market: np.ndarray  # bool: clustered at a market
    created: np.ndarray  # epoch seconds
    kind: np.ndarray  # 1 enterprise (公司), 2 individual business, 3 cooperative

    def __len__(self) -> int:
        return len(self.id)

    def index_of(self, ids) -> np.ndarray:
        return np.searchsorted(self.id, np.asarray(ids, dtype=np.int64))


def load_merchants() -> Merchants:
    rows = _fetchall(
        """
        SELECT m.id, coalesce(m.grid_id, 0), coalesce(m.owner_id, 0), coalesce(g.sub_branch_id, 0),
               ST_X(m.location), ST_Y(m.location),
               CASE m.status WHEN 'prospect' THEN 0 WHEN 'customer' THEN 1 WHEN 'dormant' THEN 2 ELSE 3 END,
               coalesce(m.place_id, 0), coalesce(p.kind = 'market', false),
               floor(extract(epoch FROM m.created_at))::bigint,
               CASE WHEN m.name LIKE '%公司' THEN 1 WHEN m.name LIKE '%合作社' THEN 3 ELSE 2 END
        FROM crm_merchant m
        LEFT JOIN grids_grid g ON g.id = m.grid_id
        LEFT JOIN grids_place p ON p.id = m.place_id
        ORDER BY m.id
        """
    )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 11
    i8, f8 = np.int64, np.float64
    types = (i8, i8, i8, i8, f8, f8, i8, i8, bool, i8, i8)
    return Merchants(*(np.array(c, dtype=t) for c, t in zip(cols, types, strict=True)))


# -- The steps ----------------------------------------------------------------------------------------


class AccountSteps:
    """Mixed into DemoBuilder: ``rng(step)``, ``today``, ``summary`` and ``log`` come from there."""

    _merchants: Merchants | None = None

    def merchants(self) -> Merchants:
        if self._merchants is None:
            self._merchants = load_merchants()
        return self._merchants

    # Time: epoch seconds; t1 = the start of today (Asia/Shanghai), t0 = a year before.
    @property
    def t1(self) -> int:
        zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
        return int(dt.datetime.combine(self.today, dt.time(), tzinfo=zone).timestamp())

    @property
    def t0(self) -> int:
        return self.t1 - 365 * DAY

    def day_times(self, rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
        """A working-hours time (local) on each local day ``days`` (0 = today, -1 = yesterday ...)."""
        morning = rng.random(days.shape) < 0.45
        hours = np.where(morning, rng.normal(10.2, 1.0, days.shape), rng.normal(15.2, 1.4, days.shape))
        secs = (np.clip(hours, 8.0, 19.5) * 3600).astype(np.int64)
        return self.t1 + days.astype(np.int64) * DAY + secs

    def times_between(self, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """One working-hours time in [lo, hi) per element, fewer at weekends."""
        span = np.maximum(hi - lo, 1)
        t = lo + (rng.random(len(lo)) * span).astype(np.int64)
        again = lo + (rng.random(len(lo)) * span).astype(np.int64)
        day = (t - self.t1) // DAY
        weekend = (self.today.weekday() + day) % 7 >= 5
        t = np.where(weekend & (rng.random(len(lo)) < 0.6), again, t)
        return np.clip(self.day_times(rng, (t - self.t1) // DAY), lo, hi - 1)

    # -- persons -----------------------------------------------------------------------------------
    def step_persons(self):
        from faker.providers.person.zh_CN import Provider as Names

        M, rng = self.merchants(), self.rng("persons")
        n = len(M)
        group = np.where(M.place > 0, M.place, -M.grid)  # the place a merchant clusters at, else its grid
        created: list[np.ndarray] = []
        n_persons = 0

        def new(at: np.ndarray) -> np.ndarray:
            nonlocal n_persons
            created.append(at)
            out = np.arange(n_persons, n_persons + len(at), dtype=np.int64)
            n_persons += len(at)
            return out

        # Owners: 92 % of merchants have one on record; ~6 % of those are the owner of another
        # merchant of the same place (or grid): one boss, several shops.
        has_owner = rng.random(n) < 0.92
        try_share = has_owner & (rng.random(n) < 0.06)
        donor_of = pick_in_group(rng, group, np.flatnonzero(has_owner & ~try_share), np.flatnonzero(try_share))
        shared = np.zeros(n, dtype=bool)
        shared[np.flatnonzero(try_share)[donor_of >= 0]] = True
        primary = has_owner & ~shared
        owner_p = np.full(n, -1, dtype=np.int64)
        prim_idx = np.flatnonzero(primary)
        owner_p[prim_idx] = new(M.created[prim_idx])
        owner_p[np.flatnonzero(try_share)[donor_of >= 0]] = owner_p[donor_of[donor_of >= 0]]

        links: list[tuple[np.ndarray, ...]] = []  # (merchant idx, person k, role, share %, title)

        def link(m_idx, person, role, share=None, title=None):
            k = len(m_idx)
            links.append(
                (
                    m_idx,
                    person,
                    np.full(k, ROLES.index(role)),
                    np.full(k, -1) if share is None else share,
                    np.zeros(k, dtype=np.int64) if title is None else title,
                )
            )

        owners = np.flatnonzero(has_owner)
        link(owners, owner_p[owners], "owner")
        # Legal representative: the owner, except for 30 % of companies (a hired manager).
        company = M.kind == 1
        legal_p = owner_p.copy()
        hired = np.flatnonzero(has_owner & company & (rng.random(n) < 0.3))
        legal_p[hired] = new(M.created[hired])
        link(owners, legal_p[owners], "legal_rep")

        # Shareholders of companies: the owner, and for 55 % one or two more (15 % of them the
        # owner of another merchant of the same grid: an investor).
        co = np.flatnonzero(has_owner & company)
        extra = np.where(rng.random(len(co)) < 0.55, 1 + (rng.random(len(co)) < 0.35), 0)
        owner_share = np.where(extra == 0, 100, rng.integers(51, 91, len(co)))
        link(co, owner_p[co], "shareholder", share=owner_share)
        controller = co[(extra > 0) & (rng.random(len(co)) < 0.5)]
        link(controller, owner_p[controller], "controller")
        sh_m = np.repeat(co, extra)
        rest = np.repeat(100 - owner_share, extra)
        pos, cnt = repeat_positions(extra), np.repeat(extra, extra)
        first = np.round(rest * np.repeat(rng.uniform(0.3, 0.7, len(co)), extra)).astype(np.int64)
        sh_share = np.where(cnt == 1, rest, np.where(pos == 0, first, rest - first))
        investor = rng.random(len(sh_m)) < 0.15
        inv_m = pick_in_group(rng, M.grid, prim_idx, sh_m[investor])
        sh_p = np.full(len(sh_m), -1, dtype=np.int64)
        inv_p = np.where(inv_m >= 0, owner_p[np.maximum(inv_m, 0)], -1)
        inv_p[inv_p == owner_p[sh_m[investor]]] = -1
        sh_p[np.flatnonzero(investor)] = inv_p
        fresh = np.flatnonzero(sh_p < 0)
        sh_p[fresh] = new(M.created[sh_m[fresh]])
        link(sh_m, sh_p, "shareholder", share=sh_share)

        # Contacts: 0-2 per merchant; at individual businesses some are family of the owner.
        n_contacts = (rng.random(n) < 0.35).astype(np.int64) + (rng.random(n) < 0.10)
        c_m = np.repeat(np.arange(n), n_contacts)
        c_p = new(M.created[c_m])
        family = (M.kind[c_m] == 2) & has_owner[c_m] & (rng.random(len(c_m)) < 0.25)
        fam_pick = rng.integers(0, len(N.FAMILY_CONTACTS), len(c_m))
        title = np.where(
            family,
            len(N.CONTACT_TITLES) + fam_pick + 1,
            rng.integers(0, len(N.CONTACT_TITLES), len(c_m)) + 1,
        )
        link(c_m, c_p, "contact", title=title)

        # Family ties: the contacts above, and 4 % of owners related to another owner of the same
        # place or grid (family businesses side by side in one market).
        fam_kind = np.array([PERSON_RELATION_KINDS.index(k) for _t, k in N.FAMILY_CONTACTS])
        rel_from = [owner_p[c_m[family]]]
        rel_to = [c_p[family]]
        rel_kind = [fam_kind[fam_pick[family]]]
        fam_m = prim_idx[rng.random(len(prim_idx)) < 0.04]
        other = pick_in_group(rng, group, prim_idx, fam_m)
        ok = other >= 0
        rel_from.append(owner_p[fam_m[ok]])
        rel_to.append(owner_p[other[ok]])
        rel_kind.append(choice(rng, int(ok.sum()), [0.25, 0.1, 0.1, 0.4, 0.15]))
        rel_from, rel_to, rel_kind = (np.concatenate(x) for x in (rel_from, rel_to, rel_kind))
        keep = rel_from != rel_to
        rel_from, rel_to, rel_kind = rel_from[keep], rel_to[keep], rel_kind[keep]

        # The people themselves.
        K = n_persons
        at = np.concatenate(created) if created else np.empty(0, dtype=np.int64)
        surnames = list(Names.last_names)
        sw = np.array(list(Names.last_names.values()), dtype=float)
        male_names, female_names = list(Names.first_names_male), list(Names.first_names_female)
        given = male_names + female_names
        male = rng.random(K) < 0.62
        surname = rng.choice(len(surnames), size=K, p=sw / sw.sum())
        n_male, n_female = len(male_names), len(female_names)
        g1 = np.where(male, rng.integers(0, n_male, K), n_male + rng.integers(0, n_female, K))
        g2 = np.where(male, rng.integers(0, n_male, K), n_male + rng.integers(0, n_female, K))
        single = np.array([len(g) == 1 for g in given])
        two = (rng.random(K) < 0.6) & (g1 != g2) & single[g1] & single[g2]  # 2-3 characters in all
        g2 = np.where(two, g2 + 1, 0)  # 1-based, 0 = a one-character given name

        prefixes = np.concatenate([np.arange(130, 140), np.arange(150, 160), np.arange(180, 190)])
        pw = np.concatenate([np.full(10, 0.06), np.full(10, 0.02), np.full(10, 0.02)])
        phone = unique_draws(
            rng,
            lambda k: prefixes[rng.choice(len(prefixes), size=k, p=pw / pw.sum())] * 10**8 + rng.integers(0, 10**8, k),
            K,
        )

        divisions = np.array(
            [int(d) for d in (*N.ID_DIVISIONS_HANGZHOU, *N.ID_DIVISIONS_ZHEJIANG, *N.ID_DIVISIONS_ELSEWHERE)]
        )
        dw = np.concatenate(
            [
                np.full(len(N.ID_DIVISIONS_HANGZHOU), 0.6 / len(N.ID_DIVISIONS_HANGZHOU)),
                np.full(len(N.ID_DIVISIONS_ZHEJIANG), 0.25 / len(N.ID_DIVISIONS_ZHEJIANG)),
                np.full(len(N.ID_DIVISIONS_ELSEWHERE), 0.15 / len(N.ID_DIVISIONS_ELSEWHERE)),
            ]
        )
        age_days = rng.integers(23 * 365, 65 * 365, K)
        birth = np.datetime64(self.today, "D") - age_days.astype("timedelta64[D]")
        ymd = (
            (birth.astype("datetime64[Y]").astype(np.int64) + 1970) * 10_000
            + (birth.astype("datetime64[M]").astype(np.int64) % 12 + 1) * 100
            + (birth - birth.astype("datetime64[M]")).astype(np.int64)
            + 1
        )
        division = divisions[rng.choice(len(divisions), size=K, p=dw / dw.sum())]
        base = division * 10**11 + ymd * 1000

        def seq(k, rows=None):
            m = male if rows is None else male[rows]
            return 2 * rng.integers(0, 500, k) + m  # odd for men, even for women

        body = base + seq(K)
        for _ in range(20):  # the same division, birthday and sequence twice: draw that sequence again
            _, first = np.unique(body, return_index=True)
            dup = np.setdiff1d(np.arange(K), first)
            if not len(dup):
                break
            body[dup] = base[dup] + seq(len(dup), dup)

        copy_arrays(
            "demo_person",
            {
                "k": np.arange(K),
                "surname": surname + 1,
                "g1": g1 + 1,
                "g2": g2,
                "phone": phone,
                "body": body,
                "chk": id_check_index(body) if K else np.empty(0, dtype=np.int64),
                "at": at,
            },
        )
        first_id = reserve_ids("crm_person", K)
        mp = {
            name: np.concatenate([x[i] for x in links]) if links else np.empty(0, dtype=np.int64)
            for i, name in enumerate(("m", "p", "role", "share", "title"))
        }
        copy_arrays(
            "demo_merchant_person",
            {
                "seq": np.arange(len(mp["m"])),
                "merchant_id": M.id[mp["m"]],
                "person_id": mp["p"] + first_id,
                "role": mp["role"] + 1,
                "share": mp["share"],
                "title": mp["title"],
            },
        )
        copy_arrays(
            "demo_person_relation",
            {
                "seq": np.arange(len(rel_from)),
                "from_id": rel_from + first_id,
                "to_id": rel_to + first_id,
                "kind": rel_kind + 1,
            },
        )
        titles = [*N.CONTACT_TITLES, *(t for t, _k in N.FAMILY_CONTACTS)]
        with ExitStack() as stack:
            for table in ("crm_person", "crm_merchantperson", "crm_personrelation"):
                stack.enter_context(_bulk_load(table))
            _execute(
                """
                INSERT INTO crm_person (id, name, phone, id_number, created_at)
                SELECT %(first)s + k,
                       (%(surnames)s::text[])[surname] || (%(given)s::text[])[g1]
                           || coalesce((%(given)s::text[])[g2], ''),
                       phone::text, body::text || substr('10X98765432', chk::int + 1, 1), to_timestamp(at)
                FROM demo_person ORDER BY k
                """,
                {"first": first_id, "surnames": surnames, "given": given},
            )
            links_n = _execute(
                """
                INSERT INTO crm_merchantperson (merchant_id, person_id, role, share_pct, title)
                SELECT merchant_id, person_id, role, share, title FROM (
                    SELECT DISTINCT ON (merchant_id, person_id, role)
                           merchant_id, person_id, (%(roles)s::text[])[role] AS role,
                           CASE WHEN share >= 0 THEN share::numeric(5, 2) END AS share,
                           coalesce((%(titles)s::text[])[title], '') AS title, seq
                    FROM demo_merchant_person ORDER BY merchant_id, person_id, role, seq
                ) x ORDER BY seq
                """,
                {"roles": list(ROLES), "titles": titles},
            )
            rels_n = _execute(
                """
                INSERT INTO crm_personrelation (from_person_id, to_person_id, kind)
                SELECT from_id, to_id, kind FROM (
                    SELECT DISTINCT ON (from_id, to_id, kind)
                           from_id, to_id, (%(kinds)s::text[])[kind] AS kind, seq
                    FROM demo_person_relation ORDER BY from_id, to_id, kind, seq
                ) x ORDER BY seq
                """,
                {"kinds": list(PERSON_RELATION_KINDS)},
            )
        for t in ("demo_person", "demo_merchant_person", "demo_person_relation"):
            _execute(f"DROP TABLE pg_temp.{t}")
        self.summary.counts["persons"] = K
        self.summary.counts["merchant_people"] = links_n
        self.summary.counts["shared_owners"] = int(shared.sum())
        self.summary.counts["person_relations"] = rels_n

    # -- relations ----------------------------------------------------------------------------------
    def step_relations(self):
        M, rng = self.merchants(), self.rng("relations")
        n = len(M)
        clustered = np.flatnonzero(M.place > 0)
        _, inv, size = np.unique(M.place[clustered], return_inverse=True, return_counts=True)
        # Hubs (wholesalers, a park's anchor firms) supply 1-6 merchants of the same place.
        hub = clustered[(size[inv] >= 3) & (rng.random(len(clustered)) < 0.12)]
        d = np.minimum(1 + rng.poisson(2.0, len(hub)), 6)
        s_from = np.repeat(hub, d)
        s_to = pick_in_group(rng, M.place, clustered, s_from)
        # Half of a market's wholesalers also supply 1-3 shops outside it, in the same sub-branch.
        mh = hub[M.in_market[hub]]
        mh = mh[rng.random(len(mh)) < 0.5]
        o_from = np.repeat(mh, rng.integers(1, 4, len(mh)))
        o_to = pick_in_group(rng, M.sub_branch, np.flatnonzero((M.place == 0) & (M.sub_branch > 0)), o_from)
        sup_from = np.concatenate([s_from, o_from])
        sup_to = np.concatenate([s_to, o_to])
        ok = sup_to >= 0
        sup_from, sup_to = sup_from[ok], sup_to[ok]
        sup_amt = np.clip(np.round(rng.lognormal(np.log(40), 0.9, len(sup_from))), 5, 2000).astype(np.int64)

        # Guarantees: 1.5 % of merchants guarantee another of their grid; 30 % of those mutually (互保).
        in_grid = np.flatnonzero(M.grid > 0)
        g_from = in_grid[rng.random(len(in_grid)) < 0.015]
        g_to = pick_in_group(rng, M.grid, in_grid, g_from)
        ok = g_to >= 0
        g_from, g_to = g_from[ok], g_to[ok]
        mutual = rng.random(len(g_from)) < 0.3
        g_amt = (rng.integers(5, 101, len(g_from)) * 10).astype(np.int64)
        gf = np.concatenate([g_from, g_to[mutual]])
        gt = np.concatenate([g_to, g_from[mutual]])
        ga = np.concatenate([g_amt, g_amt[mutual]])
        gm = np.concatenate([np.zeros(len(g_from), dtype=np.int64), np.ones(int(mutual.sum()), dtype=np.int64)])

        copy_arrays(
            "demo_merchant_relation",
            {
                "seq": np.arange(len(sup_from) + len(gf)),
                "from_id": M.id[np.concatenate([sup_from, gf])],
                "to_id": M.id[np.concatenate([sup_to, gt])],
                "kind": np.concatenate([np.zeros(len(sup_from), dtype=np.int64), np.ones(len(gf), dtype=np.int64)]),
                "amount": np.concatenate([sup_amt, ga]),
                "mutual": np.concatenate([np.zeros(len(sup_from), dtype=np.int64), gm]),
            },
        )
        with _bulk_load("crm_merchantrelation"):
            made = _execute(
                """
                INSERT INTO crm_merchantrelation (from_merchant_id, to_merchant_id, kind, note)
                SELECT from_id, to_id, kind, note FROM (
                    SELECT DISTINCT ON (from_id, to_id, kind) from_id, to_id, seq,
                           CASE kind WHEN 0 THEN 'supplier' ELSE 'guarantor' END AS kind,
                           CASE WHEN kind = 0 THEN '年供货约' || amount || '万元'
                                WHEN mutual = 1 THEN '互保，担保金额' || amount || '万元'
                                ELSE '担保金额' || amount || '万元' END AS note
                    FROM demo_merchant_relation WHERE from_id <> to_id
                    ORDER BY from_id, to_id, kind, seq
                ) x ORDER BY seq
                """
            )
            # Affiliates: merchants with the same owner (found by the persons step).
            affiliates = _execute(
                """
                INSERT INTO crm_merchantrelation (from_merchant_id, to_merchant_id, kind, note)
                SELECT DISTINCT a.merchant_id, b.merchant_id, 'affiliate', '同一实际控制人'
                FROM crm_merchantperson a
                JOIN crm_merchantperson b ON b.person_id = a.person_id AND b.role = 'owner'
                                         AND b.merchant_id > a.merchant_id
                WHERE a.role = 'owner'
                ORDER BY 1, 2
                """
            )
        _execute("DROP TABLE pg_temp.demo_merchant_relation")
        self.summary.counts["merchant_relations"] = made + affiliates
        del n

    # -- products -----------------------------------------------------------------------------------
    def step_products(self):
        M, rng = self.merchants(), self.rng("products")
        n = len(M)
        #            prospect customer dormant closed
        p_hold = {
            "deposit": (0.08, 0.95, 0.80, 0.50),
            "loan": (0.02, 0.30, 0.08, 0.00),
            "merchant_payment": (0.05, 0.55, 0.30, 0.10),
            "credit_card": (0.04, 0.25, 0.15, 0.05),
            "mortgage": (0.02, 0.08, 0.05, 0.02),
            "payroll": (0.01, 0.25, 0.10, 0.00),
        }
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("m", "product", "opened", "matures", "balance")}
        for product in PRODUCTS:
            p = np.array(p_hold[product])[M.status]
            if product == "payroll":
                p = np.where(M.kind == 1, p, p * 0.2)  # 代发 is mostly for companies
            idx = np.flatnonzero(rng.random(n) < p)
            k = len(idx)
            matures = np.full(k, -1, dtype=np.int64)  # days from today; -1: none
            balance = np.full(k, -1, dtype=np.int64)  # cents; -1: none
            if product == "deposit":
                opened = rng.integers(30, 10 * 365, k)
                balance = np.round(rng.lognormal(np.log(80_000), 1.1, k) * 100).astype(np.int64)
            elif product == "loan":
                # Working-capital loans: 70 % mature within the next 12 months.
                soon = rng.random(k) < 0.7
                matures = np.where(soon, rng.integers(1, 366, k), rng.integers(366, 3 * 365, k))
                term = np.where(soon, 365, np.where(matures < 730, 730, 1095))
                opened = term - matures
                balance = np.clip(np.round(rng.lognormal(np.log(500_000), 0.8, k), -4), 100_000, 3_000_000) * 100
                balance = balance.astype(np.int64)
            elif product == "mortgage":
                opened = rng.integers(365, 10 * 365, k)
                matures = rng.integers(10, 30, k) * 365 - opened
                balance = (np.round(rng.uniform(300_000, 3_000_000, k), -3) * 100).astype(np.int64)
            elif product == "credit_card":
                opened = rng.integers(30, 8 * 365, k)
                balance = (np.round(rng.uniform(0, 50_000, k), 2) * 100).astype(np.int64)
            else:  # merchant payment, payroll
                opened = rng.integers(30, 4 * 365, k)
            cols["m"].append(idx)
            cols["product"].append(np.full(k, PRODUCTS.index(product)))
            cols["opened"].append(opened)
            cols["matures"].append(matures)
            cols["balance"].append(balance)
        arr = {k: np.concatenate(v) for k, v in cols.items()}
        status = M.status[arr["m"]]
        active = np.where(status == 3, False, np.where(status == 2, rng.random(len(status)) < 0.5, True))
        order = np.lexsort((arr["product"], arr["m"]))
        copy_arrays(
            "demo_product",
            {
                "seq": np.arange(len(order)),
                "merchant_id": M.id[arr["m"][order]],
                "product": arr["product"][order] + 1,
                "opened": arr["opened"][order],
                "matures": arr["matures"][order],
                "balance": arr["balance"][order],
                "active": active[order],
            },
        )
        with _bulk_load("crm_productholding"):
            made = _execute(
                """
                INSERT INTO crm_productholding (merchant_id, product, opened_on, matures_on, balance, active)
                SELECT merchant_id, (%(products)s::text[])[product], %(today)s::date - opened::int,
                       CASE WHEN matures >= 0 THEN %(today)s::date + matures::int END,
                       CASE WHEN balance >= 0 THEN balance::numeric / 100 END, active
                FROM demo_product ORDER BY seq
                """,
                {"products": list(PRODUCTS), "today": self.today},
            )
        _execute("DROP TABLE pg_temp.demo_product")
        self.summary.counts["products_held"] = made

    # -- leads --------------------------------------------------------------------------------------
    def step_leads(self):
        M, rng = self.merchants(), self.rng("leads")
        n = len(M)
        ok = (M.grid > 0) & (M.owner > 0) & (M.status != 3)
        has = ok & (rng.random(n) < np.array([0.40, 0.33, 0.25, 0.0])[M.status])
        mi = np.flatnonzero(has)
        L = len(mi)
        product = choice(rng, L, [0.04, 0.80, 0.08, 0.04, 0.0, 0.04])  # PRODUCTS order

        # How far each lead got: the funnel's shares, then ~15 % lost from where they stopped.
        reach = np.array([1.0, 0.6, 0.4, 0.2, 0.1, 0.07, 0.05])
        k = (rng.random(L)[:, None] < reach[None, 1:]).sum(axis=1)
        lost = rng.random(L) < np.array([0.18, 0.15, 0.14, 0.15, 0.25, 0.10, 0.0])[k]

        # Times: gaps between moves (days, log-normal), squeezed into [max(a year ago, merchant
        # created), yesterday], each move at a working-hours time, strictly increasing.
        median = np.array([0, 2, 6, 6, 10, 8, 5], dtype=float)
        gaps = median[None, :] * np.exp(rng.normal(0, 0.6, (L, 7))) * DAY
        gaps = np.where(np.arange(7)[None, :] <= k[:, None], gaps, 0.0)
        lost_gap = np.where(lost, 21 * np.exp(rng.normal(0, 0.7, L)) * DAY, 0.0)
        total = gaps.sum(axis=1) + lost_gap
        hi = self.t1 - DAY
        lo = np.minimum(np.maximum(self.t0, M.created[mi]), hi - 7 * DAY)
        avail = hi - lo
        squeeze = np.minimum(1.0, 0.9 * avail / np.maximum(total, 1.0))
        start = lo + rng.random(L) * (avail - total * squeeze)
        raw = np.column_stack([start[:, None] + np.cumsum(gaps * squeeze[:, None], axis=1), np.zeros(L)])
        raw[:, LOST] = raw[np.arange(L), k] + lost_gap * squeeze
        times = self.day_times(rng, (raw.astype(np.int64) - self.t1) // DAY)
        times[:, 0] = np.maximum(times[:, 0], lo)
        for j in range(1, 7):
            times[:, j] = np.maximum(times[:, j], times[:, j - 1] + 600)
        times[:, LOST] = np.maximum(times[:, LOST], times[np.arange(L), k] + 600)
        used = np.column_stack([np.arange(7)[None, :] <= k[:, None], lost])
        last = np.where(lost, times[:, LOST], times[np.arange(L), k])
        shift = np.maximum(0, last - (self.t1 - 60))
        times -= shift[:, None]
        last -= shift

        stage = np.where(lost, LOST, k)
        intent_table = np.array(
            [
                [0.60, 0.15, 0.10, 0.15],  # none, high, medium, low: leads not yet contacted
                [0.10, 0.15, 0.45, 0.30],  # contacted / visited
                [0.00, 0.60, 0.30, 0.10],  # interested and beyond
            ]
        )
        intent = choice_by_row(rng, intent_table, np.where(k == 0, 0, np.where(k < 3, 1, 2)))
        source_table = np.array(
            [
                [0.00, 0.20, 0.15, 0.15, 0.35, 0.15],  # prospect
                [0.55, 0.10, 0.10, 0.00, 0.10, 0.15],  # customer
                [0.60, 0.00, 0.00, 0.00, 0.20, 0.20],  # dormant
                [0.60, 0.00, 0.00, 0.00, 0.20, 0.20],  # closed (not drawn)
            ]
        )
        source = choice_by_row(rng, source_table, M.status[mi])

        # Amounts (yuan): requested from "interested" for loans and from "applied" for any product
        # (the service requires it there), approved <= requested, disbursed <= approved.
        requested = np.clip(np.round(rng.lognormal(np.log(500_000), 0.8, L), -4), 100_000, 3_000_000)
        approved = np.maximum(np.floor(requested * rng.uniform(0.5, 1.0, L) / 10_000) * 10_000, 10_000)
        partly = np.floor(approved * rng.uniform(0.6, 1.0, L) / 10_000) * 10_000
        disbursed = np.where(rng.random(L) < 0.85, approved, partly)
        disbursed = np.maximum(disbursed, 10_000)
        has_req = (k >= 4) | ((k >= 3) & (product == PRODUCTS.index("loan")))
        amount_requested = np.where(has_req, requested, -1).astype(np.int64)
        amount_approved = np.where(k >= 5, approved, -1).astype(np.int64)
        amount_disbursed = np.where(k >= 6, disbursed, -1).astype(np.int64)

        # Lost reasons by the stage the lead stopped at (codes of crm_lostreason; the list is
        # configurable, so only codes present are used).
        reason_ids = dict(_fetchall("SELECT code, id FROM crm_lostreason"))
        codes = [c for c in N.LOST_NOTES if c in reason_ids] or sorted(reason_ids)
        if not codes:
            lost[:] = False
            stage = k.copy()
            used[:, LOST] = False
            last = times[np.arange(L), k]
        by_stage = {
            0: {"unreachable": 5, "no_need": 4, "other": 1},
            1: {"no_need": 5, "unreachable": 2, "rate": 1, "other_bank": 1, "other": 1},
            2: {"no_need": 3, "rate": 2.5, "other_bank": 2.5, "closed": 0.5, "other": 1.5},
            3: {"no_need": 3, "rate": 2.5, "other_bank": 2.5, "closed": 0.5, "other": 1.5},
            4: {"not_qualified": 4.5, "credit": 3.5, "other_bank": 1, "rate": 1},
            5: {"rate": 4, "other_bank": 4, "other": 2},
            6: {"other": 1},
        }
        table = np.array([[by_stage[s].get(c, 0.0) for c in codes] for s in range(7)]) + 1e-9
        reason = choice_by_row(rng, table, k) if codes else np.zeros(L, dtype=np.int64)
        notes = [(c, note) for c in codes for note in N.LOST_NOTES.get(c, ())]
        note_of_code = {c: [i for i, (cc, _n) in enumerate(notes) if cc == c] for c in codes}
        note_pick = rng.random(L)
        lost_note = np.zeros(L, dtype=np.int64)
        for ci, c in enumerate(codes):
            options = note_of_code[c]
            if options:
                sel = lost & (reason == ci) & (note_pick < 0.6)
                lost_note[sel] = np.array(options)[rng.integers(0, len(options), int(sel.sum()))] + 1
        reason_id = np.where(lost, np.array([reason_ids[c] for c in codes] or [0])[reason], -1).astype(np.int64)

        first_lead = reserve_ids("crm_lead", L)
        lead_id = first_lead + np.arange(L)
        copy_arrays(
            "demo_lead",
            {
                "id": lead_id,
                "merchant_id": M.id[mi],
                "owner_id": M.owner[mi],
                "product": product + 1,
                "stage": stage + 1,
                "intent": intent,  # 0 none, else 1-based
                "source": source + 1,
                "requested": amount_requested,
                "approved": amount_approved,
                "disbursed": amount_disbursed,
                "reason": reason_id,
                "note": lost_note,
                "created": times[:, 0],
                "changed": last,
            },
        )
        # One stage change per move: creation ("" -> lead), each step forward, and the loss.
        rows = used.ravel()
        col = np.tile(np.arange(8), L)[rows]
        lead_of = np.repeat(np.arange(L), 8)[rows]
        from_stage = np.where(col == LOST, k[lead_of], col - 1)  # -1: creation
        n_sc = int(rows.sum())
        first_sc = reserve_ids("crm_leadstagechange", n_sc)
        copy_arrays(
            "demo_stage_change",
            {
                "id": first_sc + np.arange(n_sc),
                "lead_id": lead_id[lead_of],
                "from_stage": from_stage + 1,  # 0: ""
                "to_stage": col + 1,
                "at": times.ravel()[rows],
                "grid_id": M.grid[mi][lead_of],
                "owner_id": M.owner[mi][lead_of],
            },
        )
        with _bulk_load("crm_lead"), _bulk_load("crm_leadstagechange"):
            made = _execute(
                """
                INSERT INTO crm_lead (id, merchant_id, product, stage, intent, source, owner_id, amount_requested,
                                      amount_approved, amount_disbursed, lost_reason_id, lost_note, created_at,
                                      stage_changed_at)
                SELECT d.id, d.merchant_id, (%(products)s::text[])[d.product], (%(stages)s::text[])[d.stage],
                       coalesce((%(intents)s::text[])[d.intent], ''), (%(sources)s::text[])[d.source], d.owner_id,
                       CASE WHEN d.requested >= 0 THEN d.requested::numeric END,
                       CASE WHEN d.approved >= 0 THEN d.approved::numeric END,
                       CASE WHEN d.disbursed >= 0 THEN d.disbursed::numeric END,
                       NULLIF(d.reason, -1), coalesce((%(notes)s::text[])[d.note], ''),
                       to_timestamp(d.created), to_timestamp(d.changed)
                FROM demo_lead d ORDER BY d.id
                """,
                {
                    "products": list(PRODUCTS),
                    "stages": list(STAGES),
                    "intents": list(INTENTS),
                    "sources": list(SOURCES),
                    "notes": [note for _c, note in notes],
                },
            )
            changes = _execute(
                """
                INSERT INTO crm_leadstagechange (id, lead_id, from_stage, to_stage, at, by_id, grid_id, owner_id,
                                                 recorded_at)
                SELECT d.id, d.lead_id, coalesce((%(stages)s::text[])[d.from_stage], ''),
                       (%(stages)s::text[])[d.to_stage], to_timestamp(d.at), d.owner_id, d.grid_id, d.owner_id,
                       to_timestamp(d.at)
                FROM demo_stage_change d ORDER BY d.id
                """,
                {"stages": list(STAGES)},
            )
        _execute("DROP TABLE pg_temp.demo_lead")
        _execute("DROP TABLE pg_temp.demo_stage_change")
        self.summary.counts["leads"] = made
        self.summary.counts["leads_lost"] = int(lost.sum())
        self.summary.counts["stage_changes"] = changes

    # -- activities ---------------------------------------------------------------------------------
    def step_activities(self):
        M, rng = self.merchants(), self.rng("activities")
        n = len(M)
        ok = (M.grid > 0) & (M.owner > 0)
        with_lead = np.zeros(n, dtype=bool)
        lead_merchants = [r[0] for r in _fetchall("SELECT DISTINCT merchant_id FROM crm_lead")]
        with_lead[M.index_of(lead_merchants)] = True

        # ~10 per merchant over the year: more for customers and merchants with a lead; a
        # gamma-Poisson count gives some merchants many (the busiest has 60-100).
        mean = np.array([8.0, 12.5, 6.0, 3.0])[M.status] + 2.0 * with_lead
        count = np.where(ok, rng.poisson(mean * rng.gamma(2.5, 1 / 2.5, n)), 0)
        g_m = np.repeat(np.arange(n), count)
        A = len(g_m)
        g_kind = np.where(rng.random(A) < 0.49, VISIT, CALL)
        g_at = self.times_between(rng, np.maximum(self.t0, M.created[g_m]), np.full(A, self.t1))
        outcome_table = np.array(
            [
                [0.45, 0.10, 0.12, 0.13, 0.20],  # visit: reached, not reached, interested, not interested, follow up
                [0.35, 0.25, 0.10, 0.10, 0.20],  # call
            ]
        )
        g_outcome = choice_by_row(rng, outcome_table, g_kind) + 1

        # The funnel's moves to contacted / visited / interested / applied come with an activity
        # (a call, a visit, either), linked from the stage change as lead_advance_stage does.
        sc = _fetchall(
            """
            SELECT sc.id, l.merchant_id, floor(extract(epoch FROM sc.at))::bigint, sc.to_stage
            FROM crm_leadstagechange sc JOIN crm_lead l ON l.id = sc.lead_id
            WHERE sc.to_stage IN ('contacted', 'visited', 'interested', 'applied') AND sc.activity_id IS NULL
            ORDER BY sc.id
            """
        )
        sc_id, sc_m, sc_at, sc_to = (np.array(c) for c in zip(*sc, strict=True)) if sc else ([],) * 4
        sc_id = np.asarray(sc_id, dtype=np.int64)
        S = len(sc_id)
        sc_m = M.index_of(np.asarray(sc_m, dtype=np.int64))
        sc_to = np.asarray(sc_to, dtype=str)
        p_visit = np.select([sc_to == "contacted", sc_to == "visited", sc_to == "interested"], [0.0, 1.0, 0.5], 0.6)
        l_kind = np.where(rng.random(S) < p_visit, VISIT, CALL)
        l_outcome = np.select(
            [sc_to == "contacted", sc_to == "visited", sc_to == "interested"],
            [1, np.where(rng.random(S) < 0.5, 1, 3), 3],
            5,
        )

        # Events: 0-5 per grid (a salon, a market or park event ...) run by an account manager of
        # the grid, attended by 5-25 of its merchants and some of their owners.
        grid_rows = _fetchall("SELECT id, kind FROM grids_grid ORDER BY id")
        am_rows = _fetchall(
            "SELECT grid_id, user_id FROM grids_membership "
            "WHERE role = 'account_manager' AND grid_id IS NOT NULL ORDER BY grid_id, user_id"
        )
        grid_ids = np.array([r[0] for r in grid_rows], dtype=np.int64)
        grid_kind = np.array([r[1] for r in grid_rows], dtype=object)
        am_grid = np.array([r[0] for r in am_rows], dtype=np.int64)
        am_user = np.array([r[1] for r in am_rows], dtype=np.int64)
        n_events = rng.poisson(2.5, len(grid_ids))
        n_events[~np.isin(grid_ids, am_grid)] = 0
        e_grid = np.repeat(grid_ids, n_events)
        E = len(e_grid)
        lo_am, hi_am = np.searchsorted(am_grid, e_grid, "left"), np.searchsorted(am_grid, e_grid, "right")
        e_by = am_user[np.minimum(lo_am + (rng.random(E) * (hi_am - lo_am)).astype(np.int64), max(len(am_user) - 1, 0))]
        e_gk = np.repeat(grid_kind, n_events)
        type_table = np.array(
            [
                [0.40, 0.60, 0.00, 0.00],  # park
                [0.20, 0.00, 0.60, 0.20],  # market
                [0.60, 0.00, 0.00, 0.40],  # business district
                [0.70, 0.00, 0.00, 0.30],  # other grids
            ]
        )
        e_type = choice_by_row(
            rng, type_table, np.select([e_gk == "park", e_gk == "market", e_gk == "business_district"], [0, 1, 2], 3)
        )
        titles = [(t, title) for t in EVENT_TYPES for title in N.EVENT_TITLES[t]]
        first_title = np.array([[i for i, (tt, _x) in enumerate(titles) if tt == t][0] for t in EVENT_TYPES])
        n_titles = np.array([len(N.EVENT_TITLES[t]) for t in EVENT_TYPES])
        e_title = first_title[e_type] + (rng.random(E) * n_titles[e_type]).astype(np.int64) + 1
        e_at = self.times_between(rng, np.full(E, self.t0), np.full(E, self.t1))

        # All together, in time order: ids follow time, as they would have been logged.
        kind = np.concatenate([g_kind, l_kind, np.full(E, EVENT)])
        m_idx = np.concatenate([g_m, sc_m, np.full(E, -1)])
        at = np.concatenate([g_at, np.asarray(sc_at, dtype=np.int64), e_at])
        outcome = np.concatenate([g_outcome, l_outcome, np.zeros(E, dtype=np.int64)])
        link_sc = np.concatenate([np.full(A, -1), sc_id, np.full(E, -1)])
        grid = np.concatenate([M.grid[g_m], M.grid[sc_m], e_grid])
        by = np.concatenate([M.owner[g_m], M.owner[sc_m], e_by])
        etype = np.concatenate([np.zeros(A + S, dtype=np.int64), e_type + 1])
        title = np.concatenate([np.zeros(A + S, dtype=np.int64), e_title])
        order = np.lexsort((np.arange(len(at)), at))
        T = len(order)
        kind, m_idx, at, outcome, link_sc, grid, by, etype, title = (
            x[order] for x in (kind, m_idx, at, outcome, link_sc, grid, by, etype, title)
        )

        # Notes, intent, next steps.
        visit_notes, call_notes, event_notes = len(N.VISIT_NOTES), len(N.CALL_NOTES), len(N.EVENT_NOTES)
        note = np.select(
            [kind == VISIT, kind == CALL],
            [
                rng.integers(0, visit_notes, T) + 1,
                np.where(outcome == 2, 2, rng.integers(0, call_notes, T) + 1) + visit_notes,
            ],
            rng.integers(0, event_notes, T) + 1 + visit_notes + call_notes,
        )
        interested = outcome == 3
        intent = np.where(
            kind == EVENT,
            0,
            np.where(
                interested,
                np.where(rng.random(T) < 0.6, 1, 2),
                np.where(rng.random(T) < 0.3, rng.integers(1, 4, T), 0),
            ),
        )
        p_next = np.where(kind == EVENT, 0.0, np.where(interested | (outcome == 5), 0.8, 0.35))
        next_step = np.where(rng.random(T) < p_next, rng.integers(0, len(N.NEXT_STEPS), T) + 1, 0)

        # Check-in of visits: mostly within tens of metres; some at the edge of the radius, some
        # far away, some with poor accuracy. Distance and flag are computed by PostGIS below.
        cls = choice(rng, T, [0.82, 0.08, 0.06, 0.04])  # near, edge, far, poor accuracy
        acc_good = np.clip(rng.lognormal(np.log(12), 0.6, T), 3, 80)
        acc_poor = np.clip(rng.lognormal(np.log(400), 0.6, T), 150, 3000)
        acc = np.where(cls == 3, acc_poor, acc_good)
        r = np.select(
            [cls == 0, cls == 1, cls == 2],
            [
                np.hypot(*rng.normal(0, 28, (2, T))),
                rng.uniform(120, 400, T),
                np.clip(rng.lognormal(np.log(1500), 0.7, T), 300, 8000),
            ],
            np.hypot(*rng.normal(0, 1, (2, T))) * acc_poor / 2,
        )
        theta = rng.uniform(0, 2 * np.pi, T)
        dx = r * np.cos(theta) / (KM_PER_DEG_LON * 1000)
        dy = r * np.sin(theta) / (KM_PER_DEG_LAT * 1000)
        checkout = np.where(
            (kind == VISIT) & (rng.random(T) < 0.85), np.clip(rng.lognormal(np.log(25), 0.5, T), 5, 180), -1
        ).astype(np.int64)
        delay = np.where(
            kind == VISIT,
            np.where(rng.random(T) < 0.05, rng.integers(3600, 6 * 3600, T), rng.integers(5, 600, T)),
            rng.integers(30, 3600, T),
        )
        visit = kind == VISIT
        first_act = reserve_ids("crm_activity", T)
        act_id = first_act + np.arange(T)
        copy_arrays(
            "demo_activity",
            {
                "id": act_id,
                "kind": kind,
                "merchant_id": np.where(m_idx >= 0, M.id[np.maximum(m_idx, 0)], 0),
                "grid_id": grid,
                "by_id": by,
                "at": at,
                "note": note,
                "outcome": outcome,
                "intent": intent,
                "next_step": next_step,
                "etype": etype,
                "title": title,
                "dx": np.where(visit, dx, 0.0),
                "dy": np.where(visit, dy, 0.0),
                "acc": np.where(visit, np.round(acc, 1), 0.0),
                "checkout": checkout,
                "delay": delay,
            },
        )
        # Attendance: each event's merchants (5-25 of its grid) as rows, and half of their owners
        # (people) as separate rows, as activity_log writes them.
        ev = np.flatnonzero(kind == EVENT)
        ev_grid = grid[ev]
        size = np.minimum(5 + rng.poisson(8, len(ev)), 25)
        want_ev = np.repeat(ev, size)
        in_grid = np.flatnonzero(M.grid > 0)
        keys = np.concatenate([M.grid, ev_grid])  # merchants, then one key per event (pick source)
        pick = pick_in_group(rng, keys, in_grid, len(M) + np.repeat(np.arange(len(ev)), size))
        okp = pick >= 0
        att_act = act_id[want_ev[okp]]
        att_m = M.id[pick[okp]]
        with_person = rng.random(len(att_m)) < 0.5
        copy_arrays("demo_attendance", {"activity_id": att_act, "merchant_id": att_m, "with_person": with_person})
        copy_arrays("demo_sc_link", {"sc_id": link_sc[link_sc >= 0], "activity_id": act_id[link_sc >= 0]})

        texts = [*N.VISIT_NOTES, *N.CALL_NOTES, *N.EVENT_NOTES]
        with _bulk_load("crm_activity"), _bulk_load("crm_eventattendance"):
            made = _execute(
                """
                INSERT INTO crm_activity (id, kind, merchant_id, grid_id, by_id, occurred_at, title, event_type, notes,
                                          outcome, intent, next_step, checkin_location, checkin_accuracy_m,
                                          checkin_distance_m, checkin_flag, checkout_at, device_time, received_at)
                SELECT d.id, (ARRAY['visit', 'call', 'event'])[d.kind + 1], NULLIF(d.merchant_id, 0), d.grid_id,
                       d.by_id, to_timestamp(d.at),
                       CASE WHEN d.kind = 2 THEN left(g.name || ' ' || (%(titles)s::text[])[d.title], 100) ELSE '' END,
                       coalesce((%(etypes)s::text[])[d.etype], ''), (%(texts)s::text[])[d.note],
                       coalesce((%(outcomes)s::text[])[d.outcome], ''), coalesce((%(intents)s::text[])[d.intent], ''),
                       coalesce((%(steps)s::text[])[d.next_step], ''),
                       c.loc, CASE WHEN d.kind = 0 THEN d.acc END, c.dist,
                       CASE WHEN d.kind <> 0 THEN ''
                            WHEN c.dist > %(radius)s THEN 'too_far'
                            WHEN d.acc > %(max_acc)s THEN 'poor_accuracy'
                            ELSE 'ok' END,
                       CASE WHEN d.checkout >= 0 THEN to_timestamp(d.at + 60 * d.checkout) END,
                       NULL, to_timestamp(d.at + d.delay)
                FROM demo_activity d
                LEFT JOIN crm_merchant m ON d.kind = 0 AND m.id = d.merchant_id
                LEFT JOIN grids_grid g ON d.kind = 2 AND g.id = d.grid_id
                CROSS JOIN LATERAL (
                    SELECT ST_SetSRID(ST_MakePoint(ST_X(m.location) + d.dx, ST_Y(m.location) + d.dy), 4326) AS loc
                ) p
                CROSS JOIN LATERAL (SELECT p.loc, ST_Distance(p.loc::geography, m.location::geography) AS dist) c
                """,
                {
                    "titles": [t for _k, t in titles],
                    "etypes": list(EVENT_TYPES),
                    "texts": texts,
                    "outcomes": list(OUTCOMES),
                    "intents": list(INTENTS),
                    "steps": list(N.NEXT_STEPS),
                    "radius": settings.CHECKIN_RADIUS_M,
                    "max_acc": settings.CHECKIN_MAX_ACCURACY_M,
                },
            )
            attendance = _execute(
                """
                INSERT INTO crm_eventattendance (activity_id, merchant_id, person_id)
                SELECT activity_id, merchant_id, NULL FROM (
                    SELECT DISTINCT activity_id, merchant_id FROM demo_attendance) a
                UNION ALL
                SELECT a.activity_id, NULL, o.person_id FROM (
                    SELECT DISTINCT activity_id, merchant_id FROM demo_attendance WHERE with_person) a
                CROSS JOIN LATERAL (
                    SELECT mp.person_id FROM crm_merchantperson mp
                    WHERE mp.merchant_id = a.merchant_id AND mp.role = 'owner' ORDER BY mp.person_id LIMIT 1
                ) o
                ORDER BY 1, 2, 3
                """
            )
        # Half the stage changes get their activity: cheaper with the table's indexes rebuilt after.
        with _bulk_load("crm_leadstagechange", even_if_not_empty=True):
            linked = _execute(
                "UPDATE crm_leadstagechange sc SET activity_id = d.activity_id "
                "FROM demo_sc_link d WHERE sc.id = d.sc_id"
            )
        for t in ("demo_activity", "demo_attendance", "demo_sc_link"):
            _execute(f"DROP TABLE pg_temp.{t}")
        self.summary.counts["activities"] = made
        self.summary.counts["visits"] = int(visit.sum())
        self.summary.counts["events"] = E
        self.summary.counts["event_attendance"] = attendance
        self.summary.counts["stage_changes_with_activity"] = linked

    # -- tasks --------------------------------------------------------------------------------------
    def step_tasks(self):
        rng = self.rng("tasks")
        t1 = self.t1
        # Per merchant, the latest activity with a next step in the last 30 days -> a follow-up due
        # 1-14 days after it (open unless done; some overdue, some due today); and the latest one
        # before that window -> a done (or cancelled) task.
        recent = _fetchall(
            """
            SELECT DISTINCT ON (a.merchant_id) a.id, a.by_id, a.merchant_id,
                   floor(extract(epoch FROM a.occurred_at))::bigint, true
            FROM crm_activity a
            WHERE a.merchant_id IS NOT NULL AND a.next_step <> '' AND a.occurred_at >= to_timestamp(%(since)s)
            ORDER BY a.merchant_id, a.occurred_at DESC, a.id DESC
            """,
            {"since": t1 - 30 * DAY},
        )
        older = _fetchall(
            """
            SELECT DISTINCT ON (a.merchant_id) a.id, a.by_id, a.merchant_id,
                   floor(extract(epoch FROM a.occurred_at))::bigint, false
            FROM crm_activity a
            WHERE a.merchant_id IS NOT NULL AND a.next_step <> ''
              AND a.occurred_at >= to_timestamp(%(from)s) AND a.occurred_at < to_timestamp(%(since)s)
            ORDER BY a.merchant_id, a.occurred_at DESC, a.id DESC
            """,
            {"since": t1 - 30 * DAY, "from": self.t0},
        )
        rows = recent + older
        if rows:
            act, owner, merchant, at, is_recent = (np.array(c) for c in zip(*rows, strict=True))
        else:
            act = owner = merchant = at = np.empty(0, dtype=np.int64)
            is_recent = np.empty(0, dtype=bool)
        n = len(act)
        is_recent = is_recent.astype(bool)
        # Due: 1-14 days after the activity, at 18:00 local.
        due_day = (at - t1) // DAY + rng.integers(1, 15, n)
        due = t1 + due_day * DAY + 18 * 3600
        overdue = due_day < 0
        # Past due: 70 % done (done_at between the activity and two days after due); the rest still
        # open (overdue). Not yet due: open. Older window: done, 10 % cancelled.
        done_roll = rng.random(n)
        status = np.where(
            is_recent,
            np.where(overdue & (done_roll < 0.7), 1, 0),
            np.where(done_roll < 0.9, 1, 2),
        )  # 0 open, 1 done, 2 cancelled
        done_at = at + (rng.random(n) * np.maximum(due + 2 * DAY - at, 3600)).astype(np.int64)
        done_at = np.minimum(done_at, t1 - 60)
        # Every account manager with open work has something due today.
        open_ = status == 0
        if open_.any():
            o_idx = np.flatnonzero(open_)
            owners_open = owner[o_idx]
            today_owner = np.unique(owner[open_ & (due_day == 0)])
            lacking = np.setdiff1d(np.unique(owners_open), today_owner)
            for_owner = o_idx[np.isin(owners_open, lacking)]
            # per lacking owner: its open task due soonest from now on (or the latest overdue)
            key = np.where(due_day[for_owner] >= 0, due_day[for_owner], 1000 - due_day[for_owner])
            order = np.lexsort((for_owner, key, owner[for_owner]))
            first = for_owner[order][np.r_[True, np.diff(owner[for_owner][order]) != 0]]
            first = first[at[first] < t1]  # the activity happened before today
            due_day[first] = 0
            due[first] = t1 + 18 * 3600
        copy_arrays(
            "demo_task",
            {
                "seq": np.arange(n),
                "activity_id": act.astype(np.int64),
                "owner_id": owner.astype(np.int64),
                "merchant_id": merchant.astype(np.int64),
                "created": at.astype(np.int64),
                "due": due.astype(np.int64),
                "status": status,
                "done_at": done_at.astype(np.int64),
            },
        )
        with _bulk_load("crm_task"):
            made = _execute(
                """
                INSERT INTO crm_task (owner_id, merchant_id, activity_id, lead_id, title, due_at, status, done_at,
                                      created_at)
                SELECT coalesce(m.owner_id, d.owner_id), d.merchant_id, d.activity_id, sc.lead_id, a.next_step,
                       to_timestamp(d.due), (ARRAY['open', 'done', 'cancelled'])[d.status + 1],
                       CASE WHEN d.status = 1 THEN to_timestamp(d.done_at) END, to_timestamp(d.created)
                FROM demo_task d
                JOIN crm_activity a ON a.id = d.activity_id
                JOIN crm_merchant m ON m.id = d.merchant_id
                -- the lead the activity moved, if it moved one (activity_log's ``advance_lead``)
                LEFT JOIN LATERAL (
                    SELECT s.lead_id FROM crm_leadstagechange s WHERE s.activity_id = d.activity_id LIMIT 1
                ) sc ON true
                ORDER BY d.created, d.seq
                """
            )
        _execute("DROP TABLE pg_temp.demo_task")
        self.summary.counts["tasks"] = made
        self.summary.counts["tasks_open"] = int((status == 0).sum())
