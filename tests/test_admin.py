import pytest
from django.contrib import admin


@pytest.mark.parametrize("model", [m for m in admin.site._registry if m._meta.app_label in ("grids", "crm")])
def test_admin_changelists_load_for_superusers(model, world, merchants, client):
    client.force_login(world.admin)
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    assert client.get(url).status_code == 200


def test_admin_is_for_superusers_only(world, client):
    world.regional_head.is_staff = True
    world.regional_head.save()
    client.force_login(world.regional_head)
    assert client.get("/admin/crm/merchant/").status_code == 302
