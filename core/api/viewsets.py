"""Every API viewset starts here, so every endpoint goes through restrict()."""

from rest_framework import viewsets

ACTION_FOR_METHOD = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class RestrictedViewSetMixin:
    """Maps the HTTP method to an action in ``initial()`` and restricts the queryset with it.

    Objects outside the user's scope for that action answer 404. Writes go through services,
    which re-check inside their transaction that the row lands within the user's scope."""

    scope_action = "view"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.scope_action = ACTION_FOR_METHOD.get(request.method, "view")

    def get_queryset(self):
        return super().get_queryset().restrict(self.request.user, self.scope_action)


class RestrictedReadOnlyViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class RestrictedModelViewSet(RestrictedViewSetMixin, viewsets.ModelViewSet):
    pass
