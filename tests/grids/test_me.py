def test_me_lists_active_memberships_only(world, api_as):
    body = api_as(world.am_a).get("/api/v1/me/").json()
    assert body["username"] == "am_a"
    assert [(m["role"], m["unit_id"]) for m in body["memberships"]] == [("account_manager", world.grid_a.pk)]
    assert body["grid_count"] == 1


def test_me_for_a_leaver_is_empty(world, api_as):
    body = api_as(world.former_am_a).get("/api/v1/me/").json()
    assert body["memberships"] == [] and body["grid_count"] == 0


def test_me_refuses_anonymous(api_as, db):
    assert api_as(None).get("/api/v1/me/").status_code in (401, 403)
