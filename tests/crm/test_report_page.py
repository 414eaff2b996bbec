"""The funnel report page (/reports/funnel/): the numbers of the funnel selector over the user's own
scope, a month or two dates, rows per sub-branch or per grid; bad input is a message, never a 500."""

import datetime
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crm.services.activities import activity_log
from crm.services.leads import lead_advance_stage, lead_create
from tests.factories import MerchantFactory

URL = reverse("funnel-report")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rows(body: str) -> list[str]:
    return re.findall(r'data-testid="report-row" data-code="([^"]+)"', body)


def step(body: str, stage: str) -> int:
    return int(re.search(rf'data-stage="{stage}" data-n="(\d+)"', body).group(1))


def volume(body: str, kind: str) -> int:
    block = body.split('data-testid="activity-volume"', 1)[1]
    return int(re.search(rf'data-kind="{kind}"><span class="stat-value">(\d+)<', block).group(1))


@pytest.fixture
def activity(world, merchants):
    """This month: grid A two leads (one visited) and two visits; grid B one lead and a call;
    grid C (sub-branch 2) one lead."""
    a = MerchantFactory(grid=world.grid_a)
    l1 = lead_create(merchant=merchants["grid_a"], product="loan", by=world.am_a)
    activity_log(by=world.am_a, kind="visit", merchant=merchants["grid_a"], advance_lead=l1, advance_to="visited")
    lead_create(merchant=a, product="loan", by=world.am_a)
    activity_log(by=world.am_a, kind="visit", merchant=a)
    lead_b = lead_create(merchant=merchants["grid_b"], product="loan", by=world.admin)
    activity_log(by=world.admin, kind="call", merchant=merchants["grid_b"])
    lead_create(merchant=merchants["grid_c"], product="loan", by=world.admin)
    lead_advance_stage(lead=lead_b, to_stage="contacted", by=world.admin)
    return world


def test_regional_head_sees_every_sub_branch_and_the_totals(activity):
    body = client_for(activity.regional_head).get(URL).content.decode()
    assert step(body, "lead") == 4 and step(body, "visited") == 1 and step(body, "contacted") == 1
    assert volume(body, "visit") == 2 and volume(body, "call") == 1 and volume(body, "event") == 0
    # Per sub-branch: both of the branch's sub-branches had something.
    assert rows(body) == sorted([activity.sb1.code, activity.sb2.code])
    assert "漏斗报表" in body  # Chinese first


def test_choosing_a_sub_branch_gives_its_grids(activity):
    body = client_for(activity.regional_head).get(URL, {"sub_branch": activity.sb1.pk}).content.decode()
    assert rows(body) == sorted([activity.grid_a.code, activity.grid_b.code])
    assert step(body, "lead") == 3


def test_account_manager_sees_only_their_grids(activity):
    body = client_for(activity.am_a).get(URL).content.decode()
    assert rows(body) == [activity.grid_a.code]
    assert step(body, "lead") == 2 and volume(body, "call") == 0


def test_a_sub_branch_outside_the_scope_is_refused_not_shown(activity):
    body = client_for(activity.branch_manager).get(URL, {"sub_branch": activity.sb2.pk}).content.decode()
    assert 'data-testid="report-error"' in body
    assert activity.grid_c.code not in body and 'data-testid="funnel"' not in body


def test_nobody_gets_an_empty_report(activity):
    body = client_for(activity.nobody).get(URL).content.decode()
    assert step(body, "lead") == 0 and rows(body) == []
    assert 'data-testid="report-empty"' in body


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2026-01-10"},
        {"since": "2026-02-10", "until": "2026-01-10"},
        {"since": "2024-01-01", "until": "2026-01-10"},
        {"since": "not-a-date", "until": "2026-01-10"},
        {"month": "2019-13"},
        {"sub_branch": "x"},
        {"sub_branch": "99999999999999999999"},
    ],
)
def test_bad_input_is_a_message_not_an_error(activity, query):
    response = client_for(activity.regional_head).get(URL, query)
    assert response.status_code == 200
    body = response.content.decode()
    assert "field-error" in body and 'data-testid="funnel"' not in body


def test_a_period_of_days(activity):
    today = timezone.localdate()
    query = {"since": (today - datetime.timedelta(days=3)).isoformat(), "until": today.isoformat()}
    body = client_for(activity.regional_head).get(URL, query).content.decode()
    assert step(body, "lead") == 4
    old = {"since": "2024-01-01", "until": "2024-01-31"}
    assert step(client_for(activity.regional_head).get(URL, old).content.decode(), "lead") == 0


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_a_fixed_number_of_queries(activity, django_assert_max_num_queries):
    client = client_for(activity.regional_head)
    with django_assert_max_num_queries(12):
        assert client.get(URL).status_code == 200


def test_whole_months_from_the_rollup_through_the_page(activity):
    """The rollup path (a prepared statement) behind the whole request stack, pghistory's
    middleware included: the same numbers as the raw path."""
    from crm.services.funnel_rollup import funnel_rollup_rebuild

    client = client_for(activity.regional_head)
    before = client.get(URL).content.decode()
    funnel_rollup_rebuild()
    after = client.get(URL).content.decode()
    assert step(after, "lead") == step(before, "lead") == 4
    assert volume(after, "visit") == volume(before, "visit") == 2
    assert rows(after) == rows(before)
