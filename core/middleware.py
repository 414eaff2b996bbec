from django.utils.deprecation import MiddlewareMixin

from grids.scoping import scope_cache


class ChineseFirstMiddleware(MiddlewareMixin):
    """The UI is Chinese unless the user chose English (the language cookie set by set_language).

    Django's LocaleMiddleware would otherwise follow the browser's Accept-Language, and bank
    PCs often ship with English browsers. Must run before LocaleMiddleware."""

    def process_request(self, request):
        request.META.pop("HTTP_ACCEPT_LANGUAGE", None)


class ScopeCacheMiddleware:
    """Within a read-only request (GET, HEAD, OPTIONS), each user's scope is resolved once per
    action (grids.scoping.scope_cache) instead of once per restrict(). Writes are left uncached:
    a service re-checks the scope inside its transaction, after it may have changed memberships."""

    SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in self.SAFE_METHODS:
            return self.get_response(request)
        with scope_cache():
            return self.get_response(request)
