"""Photos of a visit (门头照 ...): checked by what the bytes are, not by what the client says,
with the position and time the camera wrote into EXIF, stored through Django's storage API."""

from __future__ import annotations

import datetime
import math
import struct
import uuid
import warnings
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.contrib.gis.geos import Point
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from PIL import ExifTags, Image, UnidentifiedImageError

from crm.choices import PhotoKind
from crm.models import Activity, ActivityPhoto

#: What Pillow finds in the bytes -> the content type we store and serve, and the file extension.
FORMATS = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
}
#: Far more pixels than any phone camera; above it decoding is refused (decompression bombs).
MAX_PIXELS = 80_000_000
#: EXIF DateTimeOriginal carries no zone: the cameras are in China.
EXIF_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class ImageFacts:
    content_type: str
    extension: str
    location: Point | None
    taken_at: datetime.datetime | None


def _file_error(message) -> ValidationError:
    return ValidationError({"file": [message]})


def inspect_image(uploaded_file) -> ImageFacts:
    """Sniff the type with Pillow, check it is allowed and decodes completely, and read EXIF GPS
    and DateTimeOriginal. Raises ValidationError on ``file``."""
    size = getattr(uploaded_file, "size", None)
    if not size:
        raise _file_error(_("The file is empty."))
    if size > settings.PHOTO_MAX_BYTES:
        raise _file_error(_("The file is larger than %(max)d MB.") % {"max": settings.PHOTO_MAX_BYTES // (1024 * 1024)})
    not_an_image = _("The file is not an image of an accepted type (JPEG, PNG or WebP).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            uploaded_file.seek(0)
            with Image.open(uploaded_file) as img:
                fmt = img.format
                if fmt not in FORMATS or FORMATS[fmt][0] not in settings.PHOTO_CONTENT_TYPES:
                    raise _file_error(not_an_image)
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise _file_error(_("The image has too many pixels."))
                exif = img.getexif()
                img.load()  # decode every pixel: a truncated or corrupt file fails here
    except ValidationError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _file_error(not_an_image) from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, ZeroDivisionError):
        raise _file_error(_("The image is damaged and cannot be read.")) from None
    finally:
        uploaded_file.seek(0)
    content_type, extension = FORMATS[fmt]
    return ImageFacts(content_type, extension, exif_location(exif), exif_taken_at(exif))


def _degrees(dms) -> float | None:
    """EXIF (degrees, minutes, seconds) rationals -> decimal degrees."""
    try:
        d, m, s = (float(v) for v in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    return value if math.isfinite(value) else None


def exif_location(exif) -> Point | None:
    """GPS position from EXIF, as a WGS 84 point, or None when absent, malformed or outside China."""
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001 - a malformed IFD is simply no position
        return None
    if not gps:
        return None
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude))
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude))
    if lat is None or lon is None:
        return None
    if str(gps.get(ExifTags.GPS.GPSLatitudeRef, "N")).upper().startswith("S"):
        lat = -lat
    if str(gps.get(ExifTags.GPS.GPSLongitudeRef, "E")).upper().startswith("W"):
        lon = -lon
    ext = settings.GEO_EXTENT
    if not (ext["lon_min"] <= lon <= ext["lon_max"] and ext["lat_min"] <= lat <= ext["lat_max"]):
        return None
    return Point(lon, lat, srid=4326)


def exif_taken_at(exif) -> datetime.datetime | None:
    """DateTimeOriginal (local time in China) as an aware datetime, or None."""
    try:
        raw = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    except Exception:  # noqa: BLE001 - a malformed IFD is simply no time
        return None
    if not isinstance(raw, str):
        return None
    try:
        naive = datetime.datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=EXIF_ZONE)


def photo_attach(*, activity: Activity, by, uploaded_file, kind: str = PhotoKind.STOREFRONT) -> ActivityPhoto:
    """Attach a photo to a visit or call ``by`` may change. The file is stored under a random
    name (no personal data in paths); the row and the file are written together or not at all."""
    if kind not in PhotoKind.values:
        raise ValidationError({"kind": [_("Unknown kind of photo.")]})
    if not Activity.objects.restrict(by, "change").filter(pk=activity.pk).exists():
        raise PermissionDenied(_("You may not change this activity."))
    if activity.merchant_id is None:
        # Photos are seen by whoever sees the merchant; an event has none to follow.
        raise ValidationError({"activity": [_("Photos are attached to a visit or call.")]})
    facts = inspect_image(uploaded_file)
    photo = ActivityPhoto(
        activity=activity,
        kind=kind,
        content_type=facts.content_type,
        size=uploaded_file.size,
        exif_location=facts.location,
        exif_taken_at=facts.taken_at,
    )
    photo.file.save(f"{uuid.uuid4().hex}{facts.extension}", uploaded_file, save=False)
    try:
        with transaction.atomic():
            photo.full_clean(exclude=["activity", "file"])
            photo.save()
            if not ActivityPhoto.objects.restrict(by, "add").filter(pk=photo.pk).exists():
                raise PermissionDenied(_("You may not change this activity."))
    except BaseException:
        photo.file.delete(save=False)
        raise
    return photo
