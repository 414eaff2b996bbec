from django.utils.deprecation import MiddlewareMixin


class ChineseFirstMiddleware(MiddlewareMixin):
    """The UI is Chinese unless the user chose English (the language cookie set by set_language).

    Django's LocaleMiddleware would otherwise follow the browser's Accept-Language, and bank
    PCs often ship with English browsers. Must run before LocaleMiddleware."""

    def process_request(self, request):
        request.META.pop("HTTP_ACCEPT_LANGUAGE", None)
