"""Related merchants, for chain prospecting (链式拓客).

A merchant is related to another
  * directly, by a MerchantRelation in either direction (supply chain, guarantee, affiliation);
  * through a shared person: the same person holds a key role (owner, legal representative,
    shareholder, actual controller) at both;
  * through family, one hop: a key person here is related (PersonRelation, either direction) to a
    key person there.
Contacts (role "contact") do not make a relation: an accountant who keeps the books of twenty shops
is not a chain.

Scope: the related merchants the user cannot see are never revealed (no name, id, place or
person); they are only counted in ``hidden_count``.
"""

from __future__ import annotations

from collections import OrderedDict

from django.db import connection
from django.urls import reverse
from django.utils.translation import gettext as _

from crm.choices import MerchantRelationKind, PersonRelationKind, PersonRole
from crm.models import Merchant

KEY_ROLES = (PersonRole.OWNER, PersonRole.LEGAL_REP, PersonRole.SHAREHOLDER, PersonRole.CONTROLLER)

# One statement, every edge: (via, merchant_id, kind, direction, person_id, person_name, role_here,
# role_there, relative_id, relative_name). Each branch starts from an indexed column (the relation's
# unique (from, to, kind) index, the foreign-key indexes on merchant_id, person_id, to_person_id).
EDGES_SQL = """
WITH mine AS (
    SELECT mp.person_id, mp.role FROM crm_merchantperson mp
    WHERE mp.merchant_id = %(m)s AND mp.role = ANY(%(roles)s)
)
SELECT 'relation', r.to_merchant_id, r.kind, 'out', NULL::bigint, NULL, NULL, NULL, NULL::bigint, NULL
  FROM crm_merchantrelation r WHERE r.from_merchant_id = %(m)s
UNION ALL
SELECT 'relation', r.from_merchant_id, r.kind, 'in', NULL, NULL, NULL, NULL, NULL, NULL
  FROM crm_merchantrelation r WHERE r.to_merchant_id = %(m)s
UNION ALL
SELECT 'person', mp.merchant_id, NULL, NULL, p.id, p.name, mine.role, mp.role, NULL, NULL
  FROM mine
  JOIN crm_merchantperson mp
    ON mp.person_id = mine.person_id AND mp.merchant_id <> %(m)s AND mp.role = ANY(%(roles)s)
  JOIN crm_person p ON p.id = mine.person_id
UNION ALL
SELECT 'family', mp.merchant_id, pr.kind, 'out', p.id, p.name, mine.role, mp.role, q.id, q.name
  FROM mine
  JOIN crm_personrelation pr ON pr.from_person_id = mine.person_id
  JOIN crm_merchantperson mp
    ON mp.person_id = pr.to_person_id AND mp.merchant_id <> %(m)s AND mp.role = ANY(%(roles)s)
  JOIN crm_person p ON p.id = mine.person_id
  JOIN crm_person q ON q.id = pr.to_person_id
UNION ALL
SELECT 'family', mp.merchant_id, pr.kind, 'in', p.id, p.name, mine.role, mp.role, q.id, q.name
  FROM mine
  JOIN crm_personrelation pr ON pr.to_person_id = mine.person_id
  JOIN crm_merchantperson mp
    ON mp.person_id = pr.from_person_id AND mp.merchant_id <> %(m)s AND mp.role = ANY(%(roles)s)
  JOIN crm_person p ON p.id = mine.person_id
  JOIN crm_person q ON q.id = pr.from_person_id
"""

VIA_ORDER = {"relation": 0, "person": 1, "family": 2}


def relation_label(kind: str, direction: str) -> str:
    """How the *other* merchant stands to this one."""
    if kind == MerchantRelationKind.SUPPLIER:
        return _("Supplier (upstream)") if direction == "in" else _("Customer (downstream)")
    if kind == MerchantRelationKind.GUARANTOR:
        return _("Guarantees this merchant") if direction == "in" else _("Guaranteed by this merchant")
    return _("Affiliate")


def _edge(row) -> dict:
    via, _merchant_id, kind, direction, person_id, person_name, role_here, role_there, relative_id, relative_name = row
    roles = dict(PersonRole.choices)
    if via == "relation":
        return {"via": via, "kind": kind, "direction": direction, "label": relation_label(kind, direction)}
    person = {"id": person_id, "name": person_name, "role_here": role_here, "role_here_display": str(roles[role_here])}
    if via == "person":
        label = _("%(person)s: %(here)s here, %(there)s there") % {
            "person": person_name,
            "here": roles[role_here],
            "there": roles[role_there],
        }
        return {"via": via, "person": person, "role_there": role_there, "label": label}
    kind_label = dict(PersonRelationKind.choices).get(kind, kind)
    first, second = (person_name, relative_name) if direction == "out" else (relative_name, person_name)
    label = _("Family: %(first)s · %(kind)s · %(second)s (%(role)s there)") % {
        "first": first,
        "kind": kind_label,
        "second": second,
        "role": roles[role_there],
    }
    return {
        "via": via,
        "kind": kind,
        "direction": direction,
        "person": person,
        "relative": {"id": relative_id, "name": relative_name},
        "role_there": role_there,
        "label": label,
    }


def related_merchants(*, merchant: Merchant, user) -> dict:
    """``{"visible": [...], "hidden_count": n, "counts": {...}}`` for ``merchant`` (which the caller
    has fetched through ``restrict``). Three queries: the edges, the user's scope, the visible
    merchants."""
    with connection.cursor() as cursor:
        cursor.execute(EDGES_SQL, {"m": merchant.pk, "roles": [str(r) for r in KEY_ROLES]})
        rows = cursor.fetchall()
    by_merchant: OrderedDict[int, list] = OrderedDict()
    for row in sorted(rows, key=lambda r: (VIA_ORDER[r[0]], r[1])):
        by_merchant.setdefault(row[1], []).append(row)
    ids = list(by_merchant)
    visible = (
        {
            m.pk: m
            for m in Merchant.objects.restrict(user)
            .filter(pk__in=ids)
            .select_related("grid", "industry")
            .only("id", "name", "status", "address", "grid__id", "grid__name", "grid__code", "industry__name_zh")
        }
        if ids
        else {}
    )
    items = []
    counts = {"relation": 0, "person": 0, "family": 0}
    for merchant_id, edges in by_merchant.items():
        other = visible.get(merchant_id)
        if other is None:
            continue
        seen, links = set(), []
        for row in edges:
            key = row[:4] + row[4:5] + row[8:9]
            if key in seen:
                continue
            seen.add(key)
            links.append(_edge(row))
        for via in {link["via"] for link in links}:
            counts[via] += 1
        items.append(
            {
                "id": other.pk,
                "name": other.name,
                "status": other.status,
                "status_display": other.get_status_display(),
                "address": other.address,
                "grid": {"id": other.grid_id, "display": str(other.grid)} if other.grid_id else None,
                "industry": str(other.industry) if other.industry_id else None,
                "url": reverse("merchant-detail", args=[other.pk]),
                "links": links,
            }
        )
    return {"visible": items, "hidden_count": len(ids) - len(items), "counts": counts}


def relation_graph(*, merchant: Merchant, related: dict) -> dict:
    """Nodes and edges for the page's small graph (drawn by static/js/merchant.js): this merchant,
    the visible related merchants, the people who connect them, and one node counting the hidden."""
    nodes = [{"id": f"m{merchant.pk}", "type": "self", "label": merchant.name}]
    edges = []
    people: dict[int, str] = {}
    for item in related["visible"]:
        node = f"m{item['id']}"
        nodes.append({"id": node, "type": "merchant", "label": item["name"], "url": item["url"]})
        for link in item["links"]:
            if link["via"] == "relation":
                edges.append({"from": f"m{merchant.pk}", "to": node, "label": link["label"], "kind": "relation"})
            elif link["via"] == "person":
                people[link["person"]["id"]] = link["person"]["name"]
                pid = f"p{link['person']['id']}"
                edges.append({"from": f"m{merchant.pk}", "to": pid, "label": link["person"]["role_here_display"]})
                edges.append({"from": pid, "to": node, "label": dict(PersonRole.choices)[link["role_there"]]})
            else:
                people[link["person"]["id"]] = link["person"]["name"]
                people[link["relative"]["id"]] = link["relative"]["name"]
                pid, rid = f"p{link['person']['id']}", f"p{link['relative']['id']}"
                kind = str(dict(PersonRelationKind.choices).get(link["kind"], link["kind"]))
                edges.append({"from": f"m{merchant.pk}", "to": pid, "label": link["person"]["role_here_display"]})
                edges.append({"from": pid, "to": rid, "label": kind, "kind": "family"})
                edges.append({"from": rid, "to": node, "label": dict(PersonRole.choices)[link["role_there"]]})
    nodes += [{"id": f"p{pk}", "type": "person", "label": name} for pk, name in people.items()]
    unique, seen = [], set()
    for edge in edges:
        key = (edge["from"], edge["to"])
        if key not in seen:
            seen.add(key)
            unique.append({**edge, "label": str(edge["label"])})
    if related["hidden_count"]:
        nodes.append({"id": "hidden", "type": "hidden", "label": f"+{related['hidden_count']}"})
    return {"nodes": nodes, "edges": unique}
