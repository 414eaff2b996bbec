"""Every API viewset starts here, so every endpoint goes through restrict()."""

from django.db import transaction
from django.utils.translation import gettext as _
from rest_framework import serializers, viewsets

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

    Objects outside the user's scope for that action answer 404. After a write, ``check_in_scope``
    re-checks inside the transaction that the row is (still) within the user's write scope."""

    scope_action = "view"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.scope_action = ACTION_FOR_METHOD.get(request.method, "view")

    def get_queryset(self):
        return super().get_queryset().restrict(self.request.user, self.scope_action)

    def check_in_scope(self, instance, field="non_field_errors", message=None):
        model = type(instance)
        if not model.objects.restrict(self.request.user, "change").filter(pk=instance.pk).exists():
            transaction.set_rollback(True)
            raise serializers.ValidationError(
                {field: [message or "This change would put the record outside your scope."]}
            )


class RestrictedReadOnlyViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class RestrictedModelViewSet(RestrictedViewSetMixin, viewsets.ModelViewSet):
    pass
