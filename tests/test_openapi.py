from django.core.management import call_command


def test_schema_is_valid_without_warnings(tmp_path):
    # --fail-on-warn turns drf-spectacular's warnings (unresolvable types, enum clashes) into failures.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/merchants/" in (tmp_path / "schema.yml").read_text()


def test_docs_page_served_locally(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("docs"))
    body = client.get("/api/docs/").content.decode()
    assert "swagger" in body.lower()
    assert "cdn" not in body.lower() and "unpkg" not in body.lower()
