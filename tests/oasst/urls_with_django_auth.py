"""The project's URLs plus Django's own password-reset views (`reset/<uidb64>/<token>/`), so the
access log's redaction is tested on them too should they ever be installed."""

from django.urls import include, path

from oasst.urls import handler404, handler500
from oasst.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("django-auth/", include("django.contrib.auth.urls")), *project_urlpatterns]

__all__ = ["handler404", "handler500", "urlpatterns"]
