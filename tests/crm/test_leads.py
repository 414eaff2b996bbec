"""The funnel service and the leads API: legal and illegal moves, amounts, lost and reopen, history
rows with the grid and owner of the moment, and concurrent moves serialised by a row lock."""

import threading
import time
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.urls import reverse

from crm.models import Lead, LeadStageChange, LostReason
from crm.services.leads import lead_advance_stage, lead_create
from tests.factories import MembershipFactory, UserFactory

LEADS = "/api/v1/leads/"


def lost_reason(code="rate"):
    # Seeded by a migration; a transactional test elsewhere may have flushed it.
    reason, _ = LostReason.objects.get_or_create(code=code, defaults={"name_zh": code, "name_en": code})
    return reason


def new_lead(world, merchants, key="grid_a", by=None, **kwargs):
    return lead_create(merchant=merchants[key], product=kwargs.pop("product", "loan"), by=by or world.am_a, **kwargs)


def stages(lead):
    return list(LeadStageChange.objects.filter(lead=lead).order_by("at", "id").values_list("from_stage", "to_stage"))


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


# -- creation -----------------------------------------------------------------------------------


def test_create_writes_the_initial_stage_change(world, merchants):
    merchant = merchants["grid_a"]
    merchant.owner = world.am_a
    merchant.save()
    lead = new_lead(world, merchants, intent="high", source="cold_visit", amount_requested=Decimal("300000"))
    assert lead.stage == "lead" and lead.owner == world.am_a and lead.stage_changed_at
    change = LeadStageChange.objects.get(lead=lead)
    assert (change.from_stage, change.to_stage) == ("", "lead")
    assert change.grid_id == world.grid_a.pk and change.owner_id == world.am_a.pk and change.by_id == world.am_a.pk


def test_one_open_lead_per_merchant_and_product(world, merchants):
    new_lead(world, merchants)
    with pytest.raises(ValidationError) as excinfo:
        new_lead(world, merchants)
    assert "product" in errors_of(excinfo)
    new_lead(world, merchants, product="credit_card")  # another product is fine


def test_create_outside_scope_or_read_only_is_refused(world, merchants):
    for who, key in ((world.am_a, "grid_b"), (world.mid_office, "grid_a"), (world.nobody, "grid_a")):
        with pytest.raises(ValidationError) as excinfo:
            new_lead(world, merchants, key=key, by=who)
        assert "merchant" in errors_of(excinfo)
    assert not Lead.objects.exists()


def test_owner_must_work_in_the_merchants_grid(world, merchants):
    with pytest.raises(ValidationError) as excinfo:
        new_lead(world, merchants, owner=world.am_c)
    assert "owner" in errors_of(excinfo)
    assert new_lead(world, merchants, owner=world.grid_leader_a).owner == world.grid_leader_a


def test_amount_must_be_positive(world, merchants):
    with pytest.raises(ValidationError) as excinfo:
        new_lead(world, merchants, amount_requested=Decimal("-5"))
    assert "amount_requested" in errors_of(excinfo)


# -- transitions --------------------------------------------------------------------------------


def test_forward_moves_and_skips_are_legal_and_recorded(world, merchants):
    lead = new_lead(world, merchants)
    lead_advance_stage(lead=lead, to_stage="contacted", by=world.am_a)
    lead_advance_stage(lead=lead, to_stage="interested", by=world.am_a)  # skips visited
    lead.refresh_from_db()
    assert lead.stage == "interested"
    assert stages(lead) == [("", "lead"), ("lead", "contacted"), ("contacted", "interested")]
    assert set(LeadStageChange.objects.filter(lead=lead).values_list("grid_id", flat=True)) == {world.grid_a.pk}


@pytest.mark.parametrize(
    ("path", "to_stage"),
    [
        (["visited"], "contacted"),
        (["visited"], "lead"),
        (["contacted"], "contacted"),
        (["lost"], "contacted"),
        (["lost"], "lost"),
    ],
)
def test_illegal_moves_are_refused_on_to_stage_and_write_nothing(world, merchants, path, to_stage):
    lead = new_lead(world, merchants)
    for stage in path:
        lead_advance_stage(
            lead=lead, to_stage=stage, by=world.am_a, lost_reason=lost_reason() if stage == "lost" else None
        )
    before = stages(lead)
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=lead, to_stage=to_stage, by=world.am_a, lost_reason=lost_reason())
    assert "to_stage" in errors_of(excinfo)
    assert stages(lead) == before


def test_nothing_moves_out_of_disbursed(world, merchants):
    lead = new_lead(world, merchants, amount_requested=100)
    lead_advance_stage(lead=lead, to_stage="disbursed", by=world.am_a, amount_approved=100, amount_disbursed=90)
    for to_stage in ("lost", "lead", "approved"):
        with pytest.raises(ValidationError) as excinfo:
            lead_advance_stage(lead=lead, to_stage=to_stage, by=world.am_a, lost_reason=lost_reason())
        assert "to_stage" in errors_of(excinfo)


def test_unknown_stage(world, merchants):
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=new_lead(world, merchants), to_stage="won", by=world.am_a)
    assert "to_stage" in errors_of(excinfo)


@pytest.mark.parametrize(
    ("to_stage", "given", "missing"),
    [
        ("applied", {}, "amount_requested"),
        ("approved", {"amount_requested": 10}, "amount_approved"),
        ("disbursed", {"amount_requested": 10, "amount_approved": 10}, "amount_disbursed"),
        ("disbursed", {"amount_approved": 10, "amount_disbursed": 10}, "amount_requested"),
    ],
)
def test_amounts_are_required_from_applied_on(world, merchants, to_stage, given, missing):
    lead = new_lead(world, merchants)
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=lead, to_stage=to_stage, by=world.am_a, **given)
    assert missing in errors_of(excinfo)
    lead.refresh_from_db()
    assert lead.stage == "lead" and lead.amount_requested is None


def test_amounts_are_kept(world, merchants):
    lead = new_lead(world, merchants)
    lead_advance_stage(lead=lead, to_stage="applied", by=world.am_a, amount_requested=Decimal("500000"))
    lead_advance_stage(lead=lead, to_stage="approved", by=world.am_a, amount_approved=Decimal("400000"))
    lead_advance_stage(lead=lead, to_stage="disbursed", by=world.am_a, amount_disbursed=Decimal("400000"))
    lead.refresh_from_db()
    assert (lead.amount_requested, lead.amount_approved, lead.amount_disbursed) == (500000, 400000, 400000)


def test_an_amount_for_a_later_stage_is_refused(world, merchants):
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=new_lead(world, merchants), to_stage="visited", by=world.am_a, amount_approved=5)
    assert "amount_approved" in errors_of(excinfo)


def test_lost_needs_a_reason_and_reopen_clears_it(world, merchants):
    lead = new_lead(world, merchants)
    lead_advance_stage(lead=lead, to_stage="interested", by=world.am_a)
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=lead, to_stage="lost", by=world.am_a)
    assert "lost_reason" in errors_of(excinfo)
    lead_advance_stage(lead=lead, to_stage="lost", by=world.am_a, lost_reason=lost_reason(), lost_note="利率高")
    lead.refresh_from_db()
    assert lead.stage == "lost" and lead.lost_reason.code == "rate" and lead.lost_note == "利率高"
    lead_advance_stage(lead=lead, to_stage="lead", by=world.am_a)
    lead.refresh_from_db()
    assert lead.stage == "lead" and lead.lost_reason is None and lead.lost_note == ""
    assert stages(lead)[-2:] == [("interested", "lost"), ("lost", "lead")]


def test_a_reason_only_when_lost(world, merchants):
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(
            lead=new_lead(world, merchants), to_stage="contacted", by=world.am_a, lost_reason=lost_reason()
        )
    assert "lost_reason" in errors_of(excinfo)


def test_reopen_refused_while_another_lead_is_open(world, merchants):
    lead = new_lead(world, merchants)
    lead_advance_stage(lead=lead, to_stage="lost", by=world.am_a, lost_reason=lost_reason())
    new_lead(world, merchants)  # a new lead for the same product is now allowed
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=lead, to_stage="lead", by=world.am_a)
    assert "to_stage" in errors_of(excinfo)


def test_history_keeps_the_owner_and_grid_of_the_moment(world, merchants):
    lead = new_lead(world, merchants, owner=world.am_a)
    lead.owner = world.grid_leader_a
    lead.save()
    lead_advance_stage(lead=lead, to_stage="contacted", by=world.branch_manager)
    rows = list(LeadStageChange.objects.filter(lead=lead).order_by("id").values_list("owner_id", "by_id", "grid_id"))
    assert rows == [
        (world.am_a.pk, world.am_a.pk, world.grid_a.pk),
        (world.grid_leader_a.pk, world.branch_manager.pk, world.grid_a.pk),
    ]


def test_changes_need_change_scope(world, merchants):
    lead = new_lead(world, merchants)
    for who in (world.mid_office, world.am_c, world.former_am_a):
        with pytest.raises(PermissionDenied):
            lead_advance_stage(lead=lead, to_stage="contacted", by=who)
    assert stages(lead) == [("", "lead")]


def test_a_move_cannot_be_dated_before_the_last_one(world, merchants):
    lead = new_lead(world, merchants)
    with pytest.raises(ValidationError) as excinfo:
        lead_advance_stage(lead=lead, to_stage="contacted", by=world.am_a, at=lead.stage_changed_at.replace(year=2020))
    assert "at" in errors_of(excinfo)


@pytest.mark.django_db(transaction=True)
def test_concurrent_moves_are_serialised(world, merchants):
    """A holds the lead's row lock mid-transaction (moved to visited); B tries lead -> contacted
    meanwhile. B must wait, then see "visited" and be refused, instead of overwriting it."""
    lead = new_lead(world, merchants)
    locked, release = threading.Event(), threading.Event()
    outcome = {}

    def first():
        try:
            with transaction.atomic():
                lead_advance_stage(lead=Lead.objects.get(pk=lead.pk), to_stage="visited", by=world.am_a)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    def second():
        stale = Lead.objects.get(pk=lead.pk)  # still "lead": A has not committed
        locked.wait(10)
        try:
            lead_advance_stage(lead=stale, to_stage="contacted", by=world.am_a)
            outcome["second"] = "moved"
        except ValidationError as exc:
            outcome["second"] = exc.message_dict
        finally:
            connection.close()

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    assert locked.wait(10)
    time.sleep(0.5)
    assert b.is_alive(), "B did not wait for A's row lock"
    release.set()
    a.join(10)
    b.join(10)
    assert "to_stage" in outcome["second"]
    lead.refresh_from_db()
    assert lead.stage == "visited"
    assert stages(lead) == [("", "lead"), ("lead", "visited")]


# -- API ----------------------------------------------------------------------------------------


def advance_url(lead):
    return reverse("api:lead-advance", args=[lead.pk])


def test_api_create_and_advance(world, merchants, api_as):
    client = api_as(world.am_a)
    response = client.post(LEADS, {"merchant_id": merchants["grid_a"].pk, "product": "loan", "intent": "high"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["stage"] == "lead" and body["merchant"] == {
        "id": merchants["grid_a"].pk,
        "display": merchants["grid_a"].name,
    }
    lead = Lead.objects.get(pk=body["id"])
    response = client.post(advance_url(lead), {"to_stage": "applied", "amount_requested": "200000.00"})
    assert response.status_code == 200, response.content
    assert response.json()["stage"] == "applied" and response.json()["amount_requested"] == "200000.00"
    response = client.post(advance_url(lead), {"to_stage": "lost"})
    assert response.status_code == 400 and "lost_reason" in response.json()
    response = client.post(advance_url(lead), {"to_stage": "lost", "lost_reason": lost_reason().pk})
    assert response.status_code == 200 and response.json()["lost_reason"]["id"] == lost_reason().pk
    history = client.get("/api/v1/stage-changes/", {"lead": lead.pk}).json()["results"]
    assert [(row["from_stage"], row["to_stage"]) for row in history] == [
        ("", "lead"),
        ("lead", "applied"),
        ("applied", "lost"),
    ]


def test_api_illegal_move_is_a_400_on_to_stage(world, merchants, api_as):
    lead = new_lead(world, merchants)
    lead_advance_stage(lead=lead, to_stage="visited", by=world.am_a)
    response = api_as(world.am_a).post(advance_url(lead), {"to_stage": "contacted"})
    assert response.status_code == 400 and "to_stage" in response.json()
    response = api_as(world.am_a).post(advance_url(lead), {"to_stage": "nonsense"})
    assert response.status_code == 400 and "to_stage" in response.json()
    response = api_as(world.am_a).post(advance_url(lead), {"to_stage": "applied", "amount_requested": "-1"})
    assert response.status_code == 400 and "amount_requested" in response.json()


def test_api_no_direct_stage_write_and_no_delete(world, merchants, api_as):
    lead = new_lead(world, merchants)
    url = reverse("api:lead-detail", args=[lead.pk])
    client = api_as(world.admin)
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)(url, {"stage": "disbursed"}).status_code == 405
    response = client.post(LEADS, {"merchant_id": merchants["grid_b"].pk, "product": "loan", "stage": "disbursed"})
    assert response.status_code == 201 and response.json()["stage"] == "lead"


def test_api_advance_outside_scope_is_404(world, merchants, api_as):
    lead = new_lead(world, merchants, key="grid_b", by=world.admin)
    assert api_as(world.am_a).post(advance_url(lead), {"to_stage": "contacted"}).status_code == 404
    mine = new_lead(world, merchants)
    assert api_as(world.mid_office).post(advance_url(mine), {"to_stage": "contacted"}).status_code == 404
    assert api_as(world.mid_office).get(reverse("api:lead-detail", args=[mine.pk])).status_code == 200
    assert stages(lead) == [("", "lead")] and stages(mine) == [("", "lead")]


def test_api_activity_link_must_be_in_scope(world, merchants, api_as):
    from crm.services.activities import activity_log

    lead = new_lead(world, merchants)
    foreign = activity_log(by=world.admin, kind="call", merchant=merchants["grid_b"])
    response = api_as(world.am_a).post(advance_url(lead), {"to_stage": "contacted", "activity": foreign.pk})
    assert response.status_code == 400 and "activity" in response.json()
    call = activity_log(by=world.am_a, kind="call", merchant=merchants["grid_a"])
    response = api_as(world.am_a).post(advance_url(lead), {"to_stage": "contacted", "activity": call.pk})
    assert response.status_code == 200
    assert LeadStageChange.objects.get(lead=lead, to_stage="contacted").activity_id == call.pk


def test_api_filters(world, merchants, api_as):
    other_am = UserFactory(username="am_a2")
    MembershipFactory(user=other_am, grid=world.grid_a)
    a = new_lead(world, merchants, owner=world.am_a)
    b = new_lead(world, merchants, owner=other_am, product="deposit")
    lead_advance_stage(lead=b, to_stage="visited", by=world.am_a)
    client = api_as(world.am_a)

    def ids(**params):
        response = client.get(LEADS, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {a.pk, b.pk}
    assert ids(stage="visited") == {b.pk}
    assert ids(product="loan") == {a.pk}
    assert ids(owner=other_am.pk) == {b.pk}
    assert ids(merchant=merchants["grid_a"].pk) == {a.pk, b.pk}
    assert ids(merchant=merchants["grid_b"].pk) == set()
    assert client.get(LEADS, {"owner": "abc"}).status_code == 400
    assert client.get(LEADS, {"stage": "won"}).status_code == 400


def test_api_second_open_lead_is_a_400_on_product(world, merchants, api_as):
    client = api_as(world.am_a)
    payload = {"merchant_id": merchants["grid_a"].pk, "product": "loan"}
    assert client.post(LEADS, payload).status_code == 201
    response = client.post(LEADS, payload)
    assert response.status_code == 400 and "product" in response.json(), response.content
    response = client.post(LEADS, {**payload, "owner_id": world.am_c.pk, "product": "deposit"})
    assert response.status_code == 400 and "owner_id" in response.json()
    assert Lead.objects.count() == 1
