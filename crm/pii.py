"""Personal data (phone and ID numbers): masking, validation and a log filter.

The rule: every list, page, export and API answer shows phone and ID numbers masked
(``138****5678``, ``330106********1234``). A user holding ``crm.view_pii`` may unmask one person's
values explicitly (``GET /api/v1/people/<id>/pii/``, or the "show" button on the merchant page, which
calls it); each such view writes one ``PiiAccess`` row per field (see
``crm.services.people.person_pii_reveal``). Showing unmasked values in lists to permitted users would
make "every unmasked view is recorded" impossible to keep, so lists never do.

Personal data never travels in URLs (people are addressed by id; duplicate checks by phone are
POSTs) and never reaches logs: code that handles it is wrapped in ``sensitive_variables`` (Django's
error reports leave those locals out), and ``RedactPiiFilter`` can be attached to log handlers as a
second line of defence.
"""

from __future__ import annotations

import logging
import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

MASK = "*"
PII_FIELDS = ("phone", "id_number")
PERMISSION = "crm.view_pii"

_PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")
_ID_RE = re.compile(r"^[0-9]{17}[0-9X]$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def can_view_pii(user) -> bool:
    """True when ``user`` may unmask personal data (explicitly, and logged)."""
    return bool(user is not None and user.is_authenticated and user.has_perm(PERMISSION))


def _mask_middle(value: str, keep_start: int, keep_end: int) -> str:
    if not value:
        return ""
    if len(value) <= keep_start + keep_end:
        # Too short to show anything safely: keep only the last two characters.
        keep = min(2, len(value) // 2)
        return MASK * (len(value) - keep) + value[len(value) - keep :]
    return value[:keep_start] + MASK * (len(value) - keep_start - keep_end) + value[len(value) - keep_end :]


def mask_phone(value: str | None) -> str:
    """``13812345678`` -> ``138****5678``: the first three and last four digits stay."""
    return _mask_middle(normalize_phone(value or ""), 3, 4)


def mask_id_number(value: str | None) -> str:
    """``330106199001011234`` -> ``330106********1234``: region code and last four stay."""
    return _mask_middle((value or "").strip().upper(), 6, 4)


MASKERS = {"phone": mask_phone, "id_number": mask_id_number}


def mask(field: str, value: str | None) -> str:
    return MASKERS[field](value)


def normalize_phone(value: str) -> str:
    """Digits only (spaces and dashes dropped, a leading +86 of a mobile number dropped)."""
    value = (value or "").strip()
    digits = re.sub(r"[\s\-]", "", value)
    if digits.startswith("+86") and len(digits) == 14:
        digits = digits[3:]
    return digits


def id_number_check_char(first17: str) -> str:
    """GB 11643 check character (ISO 7064 MOD 11-2)."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def validate_phone(value: str) -> str:
    """A normalised phone number, or ValidationError (a masked value sent back is refused)."""
    if not value:
        return ""
    if MASK in value:
        raise ValidationError(_("This is a masked number; enter the full phone number or leave it unchanged."))
    if not _PHONE_RE.match(value.strip()):
        raise ValidationError(_("Enter a phone number of digits only (5 to 20)."))
    return normalize_phone(value)


def validate_id_number(value: str) -> str:
    """An 18-character resident ID number with a correct check character, or ValidationError."""
    if not value:
        return ""
    value = value.strip().upper()
    if MASK in value:
        raise ValidationError(_("This is a masked number; enter the full ID number or leave it unchanged."))
    if not _ID_RE.match(value):
        raise ValidationError(_("A resident ID number has 17 digits and a check digit or X."))
    if id_number_check_char(value[:17]) != value[17]:
        raise ValidationError(_("The check character of this ID number is wrong."))
    return value


# -- Logs -------------------------------------------------------------------------------------

# Mainland mobile numbers and resident ID numbers inside free text.
_LOG_PATTERNS = (
    (re.compile(r"(?<![0-9])(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])"), r"\1****\2"),
    (re.compile(r"(?<![0-9])([0-9]{6})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9])"), r"\1********\2"),
)


def redact(text: str) -> str:
    for pattern, replacement in _LOG_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactPiiFilter(logging.Filter):
    """Masks mobile and ID numbers in log messages (attach to handlers in settings.LOGGING)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to fix here
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
