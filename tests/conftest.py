"""Shared fixtures. ``world`` is one branch with two sub-branches, three grids and every role."""

import datetime
import os
import threading
from dataclasses import dataclass

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections
from rest_framework.test import APIClient

from tests.factories import (
    BranchFactory,
    GridFactory,
    MembershipFactory,
    MerchantFactory,
    PlaceFactory,
    SubBranchFactory,
    UserFactory,
)


@dataclass
class World:
    branch: object
    other_branch: object
    sb1: object
    sb2: object
    grid_a: object  # sub-branch 1
    grid_b: object  # sub-branch 1
    grid_c: object  # sub-branch 2
    grid_x: object  # other branch
    admin: object
    regional_head: object
    mid_office: object
    branch_manager: object  # sub-branch 1
    grid_leader_a: object
    am_a: object
    am_c: object
    nobody: object  # logged in, no membership
    former_am_a: object  # membership in grid A ended last year


def _close_live_server_thread_connections(**kwargs):
    """A live-server request thread (pytest-django's threaded server; browser journeys, schemathesis)
    closes its database connections when its response is done, whatever CONN_MAX_AGE or the state of
    close_old_connections. Keep-alive sockets keep those threads alive between requests; in CI their
    idle connections once used up PostgreSQL's 100 slots. The main thread (the test Client, inside
    the test's transaction) is never touched."""
    if threading.current_thread() is not threading.main_thread():
        connections.close_all()


request_finished.connect(_close_live_server_thread_connections, dispatch_uid="tests_close_thread_connections")


@pytest.fixture(autouse=True)
def _requests_close_their_db_connections(request):
    """Django closes a request's database connection from the request_started/request_finished
    signals. The test Client unhooks close_old_connections around each of its requests and hooks it
    back afterwards; a request that raises at the wrong moment leaves it unhooked for the rest of the
    session, and then every live-server request thread keeps its connection open until PostgreSQL
    runs out of slots (seen in CI: e2e and schemathesis failing with 'remaining connection slots').
    After each test the hooks are put back; which test unhooked them is written to
    $GRIDCRM_SIGNAL_LOG when that is set."""
    yield
    for signal in (request_started, request_finished):
        if not signal.disconnect(close_old_connections) and os.environ.get("GRIDCRM_SIGNAL_LOG"):
            with open(os.environ["GRIDCRM_SIGNAL_LOG"], "a", encoding="utf-8") as log:
                log.write(f"{request.node.nodeid}\n")
        signal.connect(close_old_connections)


@pytest.fixture
def world(db):
    branch = BranchFactory(name="杭州分行")
    other_branch = BranchFactory(name="宁波分行")
    sb1 = SubBranchFactory(branch=branch, name="西湖支行")
    sb2 = SubBranchFactory(branch=branch, name="滨江支行")
    sbx = SubBranchFactory(branch=other_branch)
    grid_a, grid_b = GridFactory(sub_branch=sb1, name="网格A"), GridFactory(sub_branch=sb1, name="网格B")
    grid_c = GridFactory(sub_branch=sb2, name="网格C")
    grid_x = GridFactory(sub_branch=sbx, name="网格X")

    def member(username, role, **unit):
        user = UserFactory(username=username)
        MembershipFactory(user=user, role=role, **unit)
        return user

    former = UserFactory(username="former_am_a")
    MembershipFactory(
        user=former,
        grid=grid_a,
        start_date=datetime.date(2023, 1, 1),
        end_date=datetime.date(2024, 12, 31),
    )
    return World(
        branch=branch,
        other_branch=other_branch,
        sb1=sb1,
        sb2=sb2,
        grid_a=grid_a,
        grid_b=grid_b,
        grid_c=grid_c,
        grid_x=grid_x,
        admin=UserFactory(username="admin", is_superuser=True, is_staff=True),
        regional_head=member("regional_head", "regional_head", branch=branch),
        mid_office=member("mid_office", "mid_office", branch=branch),
        branch_manager=member("branch_manager", "branch_manager", sub_branch=sb1),
        grid_leader_a=member("grid_leader_a", "grid_leader", grid=grid_a),
        am_a=member("am_a", "account_manager", grid=grid_a),
        am_c=member("am_c", "account_manager", grid=grid_c),
        nobody=UserFactory(username="nobody"),
        former_am_a=former,
    )


@pytest.fixture
def api():
    """An API client; call ``api.force_authenticate(user)`` or use ``api_as``."""
    return APIClient()


@pytest.fixture
def api_as():
    def make(user):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def merchants(world):
    """One merchant in each grid, and one place in each grid."""
    out = {}
    for key in ("grid_a", "grid_b", "grid_c", "grid_x"):
        grid = getattr(world, key)
        out[key] = MerchantFactory(grid=grid)
        PlaceFactory(grid=grid)
    return out
