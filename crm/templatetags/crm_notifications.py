"""The header's reminder link with its unread badge (templates/base.html)."""

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from core.context_processors import request_memberships
from crm.models import Notification
from grids.scoping import UserScope, scope_q

register = template.Library()


def unread_notification_count(request) -> int:
    """The user's unread reminders, restricted, in one query.

    The scope is built from the active memberships the header already fetched for the role label
    (``request_memberships``, once per request), and applied with the same rule as ``restrict()``:
    a user without an active membership sees no reminder (a leaver), a superuser their own."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    if request.__dict__.get("_gridcrm_unread") is None:
        memberships = request_memberships(request)
        scope = UserScope(
            user.pk,
            everything=user.is_superuser,
            branch_ids=frozenset(m.branch_id for m in memberships if m.branch_id),
            sub_branch_ids=frozenset(m.sub_branch_id for m in memberships if m.sub_branch_id),
            grid_ids=frozenset(m.grid_id for m in memberships if m.grid_id),
        )
        if scope.empty:
            request._gridcrm_unread = 0
        else:
            rows = Notification.objects.filter(user_id=user.pk, read_at__isnull=True)
            q = scope_q(Notification, user, scope=scope)
            request._gridcrm_unread = (rows if q is None else rows.filter(q)).count()
    return request._gridcrm_unread


@register.simple_tag(takes_context=True)
def notifications_link(context) -> str:
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return ""
    count = unread_notification_count(request)
    current = getattr(request.resolver_match, "url_name", None) == "notifications"
    label = ngettext("%(n)s unread reminder", "%(n)s unread reminders", count) % {"n": count}
    badge = format_html('<span class="badge" data-testid="unread-badge">{}</span>', count) if count else ""
    return format_html(
        '<a class="btn btn-ghost" href="{}" title="{}" aria-label="{}: {}"{}>{}{}</a>',
        reverse("notifications"),
        label,
        _("Reminders"),
        label,
        format_html(' aria-current="page"') if current else "",
        _("Reminders"),
        badge,
    )
