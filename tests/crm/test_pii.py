"""Personal data: phone and ID numbers masked in lists, pages and the API; unmasked only through the
explicit endpoint, for users holding crm.view_pii, and every such view logged. Nothing in URLs."""

import logging

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from crm.api.people import PersonFilterSet
from crm.models import MerchantPerson, Person, PiiAccess
from crm.pii import RedactPiiFilter, id_number_check_char, mask_id_number, mask_phone, redact
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

PHONE = "13812345678"
ID_NUMBER = "33010619900101123" + id_number_check_char("33010619900101123")
PEOPLE = "/api/v1/people/"


@pytest.fixture
def boss(merchants):
    person = Person.objects.create(name="王老板", phone=PHONE, id_number=ID_NUMBER)
    MerchantPerson.objects.create(merchant=merchants["grid_a"], person=person, role="legal_rep")
    return person


@pytest.fixture
def officer(world):
    """A grid A account manager holding crm.view_pii (a compliance-approved role)."""
    user = UserFactory(username="pii_officer")
    MembershipFactory(user=user, grid=world.grid_a, role="account_manager")
    user.user_permissions.add(Permission.objects.get(codename="view_pii", content_type__app_label="crm"))
    return type(user).objects.get(pk=user.pk)  # fresh: no cached permissions


def test_masks():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"
    assert mask_id_number("330106199001011234") == "330106********1234"
    assert mask_phone("") == "" and mask_id_number(None) == ""
    assert "5" not in mask_phone("12345")[:-2]


def test_api_masks_for_an_account_manager(world, boss, api_as):
    client = api_as(world.am_a)
    for path in (PEOPLE, f"{PEOPLE}{boss.pk}/", f"/api/v1/merchants/{boss.merchant_links.get().merchant_id}/profile/"):
        response = client.get(path)
        assert response.status_code == 200
        text = response.content.decode()
        assert "138****5678" in text and "330106********" in text
        assert PHONE not in text and ID_NUMBER not in text


def test_api_masks_even_for_a_permitted_user(world, boss, officer, api_as):
    # Lists never unmask: each unmasked view must be an explicit, logged request.
    text = api_as(officer).get(PEOPLE).content.decode()
    assert PHONE not in text and ID_NUMBER not in text


def test_unmask_is_refused_without_permission_and_not_logged(world, boss, api_as):
    response = api_as(world.am_a).get(f"{PEOPLE}{boss.pk}/pii/")
    assert response.status_code == 403
    assert PHONE not in response.content.decode()
    assert PiiAccess.objects.count() == 0


def test_unmask_with_permission_returns_full_values_and_logs(world, boss, officer, api_as, merchants):
    merchant = merchants["grid_a"]
    response = api_as(officer).get(f"{PEOPLE}{boss.pk}/pii/", {"merchant": merchant.pk})
    assert response.status_code == 200
    assert response.json() == {"id": boss.pk, "phone": PHONE, "id_number": ID_NUMBER}
    assert response["Cache-Control"] == "no-store"
    log = list(PiiAccess.objects.order_by("field").values_list("user_id", "person_id", "field", "context"))
    assert log == [
        (officer.pk, boss.pk, "id_number", f"merchant:{merchant.pk}"),
        (officer.pk, boss.pk, "phone", f"merchant:{merchant.pk}"),
    ]
    assert all(PiiAccess.objects.values_list("at", flat=True))
    # One field only: one row.
    api_as(officer).get(f"{PEOPLE}{boss.pk}/pii/", {"fields": "phone"})
    assert PiiAccess.objects.count() == 3


def test_unmask_bad_field_is_400_and_logs_nothing(world, boss, officer, api_as):
    response = api_as(officer).get(f"{PEOPLE}{boss.pk}/pii/", {"fields": "phone,salary"})
    assert response.status_code == 400 and "fields" in response.json()
    assert PiiAccess.objects.count() == 0


def test_unmask_out_of_scope_is_404_even_with_permission(world, merchants, officer, api_as):
    other = Person.objects.create(name="滨江老板", phone="13999999999")
    MerchantPerson.objects.create(merchant=merchants["grid_c"], person=other, role="owner")
    assert api_as(officer).get(f"{PEOPLE}{other.pk}/pii/").status_code == 404
    assert PiiAccess.objects.count() == 0


def test_page_masks_and_offers_show_only_with_permission(world, boss, officer, merchants):
    path = f"/merchants/{merchants['grid_a'].pk}/"
    for user, button in ((world.am_a, False), (officer, True)):
        client = Client()
        client.force_login(user)
        body = client.get(path).content.decode()
        assert "138****5678" in body and PHONE not in body and ID_NUMBER not in body
        assert ("pii-toggle" in body) is button
    assert PiiAccess.objects.count() == 0  # rendering the page unmasks nothing


def test_writes_validate_personal_data(world, merchants, api_as):
    client = api_as(world.am_a)
    base = {"name": "新联系人", "merchant": merchants["grid_a"].pk, "role": "contact"}
    masked = client.post(PEOPLE, {**base, "phone": "138****5678"})
    assert masked.status_code == 400 and "phone" in masked.json()
    bad_id = client.post(PEOPLE, {**base, "id_number": ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1")})
    assert bad_id.status_code == 400 and "id_number" in bad_id.json()
    ok = client.post(PEOPLE, {**base, "phone": "138-1234-5678", "id_number": ID_NUMBER.lower()})
    assert ok.status_code == 201, ok.content
    assert ok.json()["phone"] == "138****5678"
    person = Person.objects.get(pk=ok.json()["id"])
    assert (person.phone, person.id_number) == (PHONE, ID_NUMBER)
    # Sending the masked value back on an edit is refused, so a real number is never overwritten.
    response = client.patch(f"{PEOPLE}{person.pk}/", {"phone": ok.json()["phone"]})
    assert response.status_code == 400
    person.refresh_from_db()
    assert person.phone == PHONE


def test_people_are_never_filtered_by_personal_data_in_urls():
    assert set(PersonFilterSet.base_filters) == {"merchant"}


def test_logs_are_redacted(caplog):
    assert redact(f"call {PHONE} about {ID_NUMBER}") == "call 138****5678 about 330106********" + ID_NUMBER[-4:]
    logger = logging.getLogger("gridcrm.test")
    handler_filter = RedactPiiFilter()
    logger.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="gridcrm.test"):
            logger.info("person %s phone %s", "王老板", PHONE)
    finally:
        logger.removeFilter(handler_filter)
    assert PHONE not in caplog.text and "138****5678" in caplog.text


def test_the_console_log_handler_masks_phone_numbers():
    """The filter is wired into settings.LOGGING: the handler that writes log lines masks them."""
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactPiiFilter) for f in h.filters)]
    assert handlers, "no root log handler carries crm.pii.RedactPiiFilter"
    record = logging.LogRecord("gridcrm", logging.INFO, __file__, 1, "called %s", ("13812345678",), None)
    assert handlers[0].filter(record)
    assert "13812345678" not in record.getMessage()
    assert "138****5678" in record.getMessage()
