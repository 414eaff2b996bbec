"""Production settings: `check --deploy` is clean with the committed .env.example, and production
refuses to start when a required secret is missing. Each run is a subprocess with a clean
environment (.env.example plus PATH/locale, nothing else), so the developer's shell cannot help."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = REPO / ".env.example"
PYTHON = sys.executable


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and ``# comments`` (whole-line or after whitespace) ignored."""
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE in {path.name}: {raw!r}"
        value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def clean_env(**overrides) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": "/tmp"}
    env.update(parse_env_file(ENV_EXAMPLE))
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(args, env, timeout=120):
    return subprocess.run(
        [PYTHON, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def dotenv_keys():
    """config/settings/base.py also reads a local .env; keys found there would mask a missing one."""
    dotenv = REPO / ".env"
    return set(parse_env_file(dotenv)) if dotenv.exists() else set()


def test_env_example_parses_and_has_what_production_needs():
    env = parse_env_file(ENV_EXAMPLE)
    for key in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"):
        assert env.get(key), key
    # Inline comments are not part of values.
    assert "#" not in env["DJANGO_SECRET_KEY"]
    assert " " not in env["DJANGO_SECRET_KEY"]
    key = env["DJANGO_SECRET_KEY"]
    assert len(key) >= 50 and len(set(key)) >= 5 and not key.startswith("django-insecure-")
    assert env["MAP_TILE_URL"] == ""


def test_check_deploy_passes_with_env_example():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING", "--settings=config.settings.production"],
        clean_env(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output, output
    # gis.W001 is silenced on purpose (tests/core/test_geo_security.py), and only that.
    assert "(1 silenced)" in output, output


def test_production_values():
    code = (
        "from django.conf import settings as s; import json; print(json.dumps(["
        "s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS,"
        "s.SILENCED_SYSTEM_CHECKS, s.STORAGES['staticfiles']['BACKEND'], s.ALLOWED_HOSTS,"
        "s.DATABASES['default']['NAME'], s.SECRET_KEY == 'dev-only-not-secret']))"
    )
    result = run(["-c", f"import django; django.setup(); {code}"], clean_env())
    assert result.returncode == 0, result.stderr
    debug, ssl, session_secure, csrf_secure, hsts, silenced, static_backend, hosts, db_name, dev_key = json.loads(
        result.stdout.strip().splitlines()[-1]
    )
    assert debug is False
    assert ssl and session_secure and csrf_secure
    assert hsts >= 31536000
    assert silenced == ["gis.W001"]
    assert static_backend == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert hosts == ["crm.branch.example.cn"]
    assert db_name == "gridcrm"
    assert dev_key is False


@pytest.mark.parametrize("required", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without(required, dotenv_keys):
    if required in dotenv_keys:
        pytest.skip(f"a local .env defines {required}, so it cannot be missing here")
    env = clean_env(**{required: None})
    # "Start" as the app server does: import the WSGI application.
    result = run(["-c", "from config.wsgi import application"], env)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ImproperlyConfigured" in result.stderr, result.stderr
    assert required in result.stderr, result.stderr
    # The management commands (migrate, the Celery worker's Django setup) refuse too.
    result = run(["manage.py", "check", "--settings=config.settings.production"], env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and required in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["", "   "])
def test_production_refuses_an_empty_secret_key(value):
    result = run(["-c", "from config.wsgi import application"], clean_env(DJANGO_SECRET_KEY=value))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ImproperlyConfigured" in result.stderr and "DJANGO_SECRET_KEY" in result.stderr, result.stderr


def test_check_deploy_fails_on_a_weak_key():
    """The deploy check is not vacuous: a short key is a warning, and WARNING is the fail level."""
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING", "--settings=config.settings.production"],
        clean_env(DJANGO_SECRET_KEY="django-insecure-short"),
    )
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr
