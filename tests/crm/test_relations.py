"""Related merchants (链式拓客): supply chain, guarantee, affiliation both ways, shared key people,
family one hop; merchants outside the user's scope are counted, never revealed."""

import json

import pytest
from django.test import Client

from crm.models import MerchantPerson, MerchantRelation, Person, PersonRelation
from crm.selectors.relations import related_merchants
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(world, merchants):
    m = merchants["grid_a"]
    out = {"m": m}
    out["supplier"] = MerchantFactory(grid=world.grid_a, name="上游面粉厂")
    out["customer"] = MerchantFactory(grid=world.grid_c, name="滨江下游超市")  # out of am_a's scope
    out["guarantor"] = MerchantFactory(grid=world.grid_x, name="宁波担保公司")  # other branch
    out["affiliate"] = MerchantFactory(grid=world.grid_a, name="关联餐饮二店")
    out["shared"] = MerchantFactory(grid=world.grid_a, name="同一法人的五金店")
    out["shared_hidden"] = MerchantFactory(grid=world.grid_b, name="B网格控股公司")
    out["family"] = MerchantFactory(grid=world.grid_a, name="老板娘的服装店")
    out["contact_only"] = MerchantFactory(grid=world.grid_a, name="会计代账公司")
    out["unrelated"] = MerchantFactory(grid=world.grid_a, name="无关商户")

    MerchantRelation.objects.create(from_merchant=out["supplier"], to_merchant=m, kind="supplier")
    MerchantRelation.objects.create(from_merchant=m, to_merchant=out["customer"], kind="supplier")
    MerchantRelation.objects.create(from_merchant=out["guarantor"], to_merchant=m, kind="guarantor")
    MerchantRelation.objects.create(from_merchant=m, to_merchant=out["affiliate"], kind="affiliate")

    boss = Person.objects.create(name="王老板", phone="13812345678")
    wife = Person.objects.create(name="李女士", phone="13900001111")
    accountant = Person.objects.create(name="赵会计")
    MerchantPerson.objects.create(merchant=m, person=boss, role="legal_rep")
    MerchantPerson.objects.create(merchant=out["shared"], person=boss, role="shareholder")
    MerchantPerson.objects.create(merchant=out["shared_hidden"], person=boss, role="controller")
    PersonRelation.objects.create(from_person=boss, to_person=wife, kind="spouse")
    MerchantPerson.objects.create(merchant=out["family"], person=wife, role="owner")
    # A contact at both does not make a relation.
    MerchantPerson.objects.create(merchant=m, person=accountant, role="contact")
    MerchantPerson.objects.create(merchant=out["contact_only"], person=accountant, role="contact")
    out.update(boss=boss, wife=wife)
    return out


VISIBLE_TO_AM_A = {"supplier", "affiliate", "shared", "family"}
HIDDEN_FROM_AM_A = {"customer", "guarantor", "shared_hidden"}


def related_url(merchant):
    return f"/api/v1/merchants/{merchant.pk}/related/"


def test_account_manager_sees_related_in_scope_and_only_a_count_of_the_rest(world, chain, api_as):
    response = api_as(world.am_a).get(related_url(chain["m"]))
    assert response.status_code == 200
    body = response.json()
    assert {r["id"] for r in body["visible"]} == {chain[k].pk for k in VISIBLE_TO_AM_A}
    assert body["hidden_count"] == len(HIDDEN_FROM_AM_A)
    assert set(body) == {"visible", "hidden_count"}
    # Nothing of the hidden ones anywhere in the answer: no name, no id, no grid.
    text = response.content.decode()
    for key in HIDDEN_FROM_AM_A:
        hidden = chain[key]
        assert hidden.name not in text
        assert f'"id": {hidden.pk},' not in json.dumps(body) and f'"id":{hidden.pk},' not in text
        assert hidden.grid.name not in text
    assert chain["contact_only"].pk not in {r["id"] for r in body["visible"]}


def test_reasons_of_each_kind(world, chain, api_as):
    body = api_as(world.am_a).get(related_url(chain["m"])).json()
    by_id = {r["id"]: r for r in body["visible"]}
    supplier = by_id[chain["supplier"].pk]["links"]
    assert [(link["via"], link["kind"], link["direction"]) for link in supplier] == [("relation", "supplier", "in")]
    affiliate = by_id[chain["affiliate"].pk]["links"]
    assert [(link["via"], link["kind"]) for link in affiliate] == [("relation", "affiliate")]
    shared = by_id[chain["shared"].pk]["links"]
    assert shared[0]["via"] == "person" and shared[0]["person"]["name"] == "王老板"
    assert (shared[0]["person"]["role_here"], shared[0]["role_there"]) == ("legal_rep", "shareholder")
    family = by_id[chain["family"].pk]["links"]
    assert family[0]["via"] == "family" and family[0]["kind"] == "spouse"
    assert family[0]["relative"]["name"] == "李女士" and family[0]["role_there"] == "owner"
    assert by_id[chain["family"].pk]["url"] == f"/merchants/{chain['family'].pk}/"
    # Relations in the other direction are found too (from the related merchant's side).
    back = api_as(world.am_a).get(related_url(chain["supplier"])).json()
    assert [(r["id"], r["links"][0]["direction"]) for r in back["visible"]] == [(chain["m"].pk, "out")]


def test_family_works_in_both_directions(world, chain, api_as):
    # From the wife's shop: the husband's legal-rep merchant (and his shareholding) one hop away.
    body = api_as(world.am_a).get(related_url(chain["family"])).json()
    ids = {r["id"] for r in body["visible"]}
    assert chain["m"].pk in ids and chain["shared"].pk in ids
    assert body["hidden_count"] == 1  # the controller's company in grid B


def test_wider_scopes_see_more(world, chain, api_as):
    admin = api_as(world.admin).get(related_url(chain["m"])).json()
    assert {r["id"] for r in admin["visible"]} == {chain[k].pk for k in VISIBLE_TO_AM_A | HIDDEN_FROM_AM_A}
    assert admin["hidden_count"] == 0
    regional = api_as(world.regional_head).get(related_url(chain["m"])).json()
    assert regional["hidden_count"] == 1  # only the other branch's guarantor


def test_related_404_out_of_scope(world, chain, api_as):
    assert api_as(world.am_a).get(related_url(chain["customer"])).status_code == 404
    assert api_as(world.nobody).get(related_url(chain["m"])).status_code == 404


def test_selector_runs_three_queries(world, chain, django_assert_num_queries):
    with django_assert_num_queries(3):
        related_merchants(merchant=chain["m"], user=world.am_a)


def test_page_lists_visible_links_and_counts_the_hidden(world, chain):
    client = Client()
    client.force_login(world.am_a)
    response = client.get(f"/merchants/{chain['m'].pk}/")
    body = response.content.decode()
    for key in VISIBLE_TO_AM_A:
        assert f'href="/merchants/{chain[key].pk}/"' in body
    for key in HIDDEN_FROM_AM_A:
        assert chain[key].name not in body
        assert f"/merchants/{chain[key].pk}/" not in body
    assert 'data-testid="hidden-related"' in body
    graph = response.context["page_config"]["graph"]
    assert {n["type"] for n in graph["nodes"]} == {"self", "merchant", "person", "hidden"}
    assert next(n for n in graph["nodes"] if n["type"] == "hidden")["label"] == "+3"
