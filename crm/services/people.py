"""Writes on people: create/update with validated personal data, and the logged unmasking of it."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from crm.choices import PersonRole
from crm.models import Merchant, MerchantPerson, Person, PiiAccess
from crm.pii import PII_FIELDS, can_view_pii, validate_id_number, validate_phone


@sensitive_variables()
def person_save(
    *,
    person: Person,
    by,
    fields: dict | None = None,
    merchant: Merchant | None = None,
    role: str | None = None,
    share_pct=None,
    title: str = "",
) -> Person:
    """Create or update a person. A new person must be linked to a merchant (``merchant`` and
    ``role``): people are only visible through a merchant, so an unlinked person would be lost to
    everyone. The merchant must lie in ``by``'s change scope; afterwards the person is re-checked
    inside the transaction to be within ``by``'s scope."""
    fields = dict(fields or {})
    errors: dict[str, list] = {}
    for name, check in (("phone", validate_phone), ("id_number", validate_id_number)):
        if name in fields:
            try:
                fields[name] = check(fields[name] or "")
            except ValidationError as exc:
                errors[name] = exc.messages
    creating = person.pk is None
    if creating and merchant is None:
        errors["merchant"] = [_("A new person must be linked to a merchant.")]
    if merchant is not None and role not in PersonRole.values:
        errors["role"] = [_("Choose the person's role at the merchant.")]
    if errors:
        raise ValidationError(errors)
    for name, value in fields.items():
        setattr(person, name, value)
    action = "add" if creating else "change"
    with transaction.atomic():
        if merchant is not None and not Merchant.objects.restrict(by, "change").filter(pk=merchant.pk).exists():
            raise ValidationError({"merchant": [_("This merchant is outside the grids you may work in.")]})
        person.full_clean()
        person.save()
        if merchant is not None:
            link = MerchantPerson(merchant=merchant, person=person, role=role, share_pct=share_pct, title=title or "")
            link.full_clean()
            link.save()
        if not Person.objects.restrict(by, action).filter(pk=person.pk).exists():
            raise ValidationError({"merchant": [_("This person is outside the grids you may work in.")]})
    return person


@sensitive_variables()
def person_pii_reveal(*, person: Person, by, fields=PII_FIELDS, context: str = "") -> dict:
    """The unmasked values of ``fields`` for a user holding ``crm.view_pii``; one PiiAccess row per
    non-empty field shown (who, whom, which field, when). Scope is the caller's business: ``person``
    must come from ``Person.objects.restrict(by)``."""
    if not can_view_pii(by):
        raise PermissionDenied(_("You do not have permission to view personal data."))
    unknown = [f for f in fields if f not in PII_FIELDS]
    if unknown:
        raise ValidationError({"fields": [_("Unknown field: %(name)s.") % {"name": unknown[0]}]})
    values = {f: getattr(person, f) for f in fields}
    with transaction.atomic():
        PiiAccess.objects.bulk_create(
            [PiiAccess(user=by, person=person, field=f, context=context[:100]) for f, v in values.items() if v]
        )
    return values
