"""The django.contrib.sites Site, whose name and domain allauth's emails carry ("Hello from OASST!"): set from
settings (OASST_SITE_NAME, OASST_SITE_DOMAIN) after each migrate, so no email names example.com."""

from django.conf import settings
from django.contrib.sites.models import Site


def site_from_settings() -> Site:
    site, _ = Site.objects.update_or_create(
        pk=settings.SITE_ID, defaults={"name": settings.SITE_NAME, "domain": settings.SITE_DOMAIN}
    )
    Site.objects.clear_cache()
    return site


def site_from_settings_after_migrate(**kwargs) -> None:
    site_from_settings()
