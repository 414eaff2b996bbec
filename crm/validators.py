"""统一社会信用代码 (unified social credit code, GB 32100-2015) validation."""

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code_check_char(first17: str) -> str:
    total = sum(CREDIT_CODE_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(value: str) -> None:
    if len(value) != 18:
        raise ValidationError(_("A unified social credit code has 18 characters."), code="length")
    bad = [c for c in value if c not in CREDIT_CODE_ALPHABET]
    if bad:
        raise ValidationError(
            _("Character %(char)s is not allowed in a unified social credit code."),
            params={"char": bad[0]},
            code="charset",
        )
    if credit_code_check_char(value[:17]) != value[17]:
        raise ValidationError(_("The check character of this credit code is wrong."), code="checksum")
