"""Fails when an API endpoint has no test class using the generic scope checks."""

import importlib
import pkgutil

import tests
from config.api_router import router
from tests.scope_checks import ScopedEndpointChecks


def _checked_basenames() -> set[str]:
    for module in pkgutil.walk_packages(tests.__path__, "tests."):
        if module.name.startswith("tests.e2e"):
            continue
        importlib.import_module(module.name)

    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    return {cls.basename for cls in walk(ScopedEndpointChecks) if cls.basename and cls.__name__.startswith("Test")}


def test_every_router_endpoint_has_scope_tests():
    registered = {basename for _prefix, _viewset, basename in router.registry}
    missing = registered - _checked_basenames()
    assert not missing, f"endpoints without a ScopedEndpointChecks test class: {sorted(missing)}"


def test_every_viewset_goes_through_restrict():
    from core.api.viewsets import RestrictedViewSetMixin

    unrestricted = [
        basename for _p, viewset, basename in router.registry if not issubclass(viewset, RestrictedViewSetMixin)
    ]
    assert not unrestricted
