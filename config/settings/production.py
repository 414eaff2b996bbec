"""Production. Every secret comes from the environment; there are no secret defaults."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")  # required: no default
if not SECRET_KEY.strip():
    # Django would start with it and fail only when something is signed; refuse at start instead.
    raise ImproperlyConfigured("Set the DJANGO_SECRET_KEY environment variable (it is empty)")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Static files served by the app server itself (collectstatic at deploy); no CDN on an intranet.
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")  # noqa: F405
STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}  # noqa: F405

# gis.W001: Debian 12 ships GDAL 3.6; Django wants >= 3.9 so GDAL's own file/network access can
# be switched off. Compensating controls, each covered by tests/core/test_geo_security.py:
#   1. SRIDs are integers from settings.ALLOWED_SRIDS only (core.geo.srid);
#   2. no user-supplied string is ever passed to SpatialReference/GDALRaster/OGRGeometry: GeoJSON
#      input is parsed by our own validator into GEOS objects built from numbers (core.geo);
#   3. GeoJSON with a "crs" member is rejected with a 400;
#   4. no spatial lookup is built straight from a query string (bbox is parsed to four floats);
#   5. app servers have no outbound network (bank intranet);
#   6. grid/place file import (grids/io/readers.py, the only module that opens files with GDAL)
#      hands GDAL a fixed file name in a private temp dir, never the uploaded name, with exactly
#      one driver per format; GeoJSON with "crs"/NaN, KML with DOCTYPE/ENTITY/NetworkLink and
#      zips with absolute/".."/symlink entries or too many/too large members are refused first.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]
