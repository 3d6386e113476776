"""The admin site: Django's, except that every ModelAdmin registered on it (ours and the third-party
apps': auth, DRF's tokens, allauth, django-celery-beat, sites) filters its changelist only by the
query-string parameters of its declared filters. Django's own `lookup_allowed` lets staff filter by
any local field and by a related model's primary key (``?email=``, ``?auth_token__key__startswith=``),
which tells them another user's secrets one character at a time (issue 21, finding 1)."""

from __future__ import annotations

import logging

from django.contrib import admin
from django.contrib.admin import widgets
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Field
from django.http import HttpRequest, HttpResponseBadRequest

security_log = logging.getLogger("django.security.DisallowedModelAdminLookup")


class DeclaredLookupsOnly:
    """A ModelAdmin mixin: the changelist accepts a filter parameter only when one of the admin's
    `list_filter` entries (or its `date_hierarchy`) expects it. Django's changelist removes its own
    parameters (search, ordering, page, popup, facets; `_to_field` goes through `to_field_allowed`)
    before asking `lookup_allowed`, so they are unaffected."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in self.declared_lookups(request) or self._limit_choices_lookup(lookup, value)

    def declared_lookups(self, request: HttpRequest | None) -> frozenset[str]:
        """The parameters the declared filters expect, built once per request (filters on a relation
        read their choices when built)."""
        per_request = vars(request).setdefault("_admin_declared_lookups", {}) if request is not None else {}
        if self not in per_request:
            per_request[self] = frozenset(self._expected_parameters(request))
        return per_request[self]

    def _expected_parameters(self, request: HttpRequest | None) -> set[str]:
        # The same construction as django.contrib.admin.views.main.ChangeList.get_filters, with no
        # parameters: each filter names the parameters it would read.
        list_filter = self.get_list_filter(request) if request is not None else self.list_filter
        parameters = set()
        for item in list_filter:
            if callable(item):
                spec = item(request, {}, self.model, self)
            else:
                field, filter_class = item if isinstance(item, (tuple, list)) else (item, admin.FieldListFilter.create)
                field_path = None
                if not isinstance(field, Field):
                    field_path = field
                    field = get_fields_from_path(self.model, field_path)[-1]
                spec = filter_class(field, request, {}, self.model, self, field_path=field_path)
            parameters.update(spec.expected_parameters())
        if self.date_hierarchy:
            parameters.update(f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day"))
        return parameters

    def _limit_choices_lookup(self, lookup: str, value: str) -> bool:
        """The fixed (lookup, value) pairs a raw-id popup sends for a foreign key's `limit_choices_to`,
        allowed as Django allows them."""
        for fk_lookup in self.model._meta.related_fkey_lookups:
            if callable(fk_lookup):
                fk_lookup = fk_lookup()
            if (lookup, value) in widgets.url_params_from_lookup_dict(fk_lookup).items():
                return True
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except DisallowedModelAdminLookup as refusal:
            security_log.warning("%s (%s %s)", refusal, request.method, request.path,
                                 extra={"status_code": 400, "request": request})
            return HttpResponseBadRequest(
                f"{refusal}: this list filters only by the filters in its sidebar.",
                content_type="text/plain; charset=utf-8")


class OasstAdminSite(admin.AdminSite):
    """Mixes `DeclaredLookupsOnly` into every ModelAdmin registered, whichever app registers it."""

    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, DeclaredLookupsOnly):
            admin_class = type(admin_class.__name__, (DeclaredLookupsOnly, admin_class), {
                "__module__": admin_class.__module__, "__qualname__": admin_class.__qualname__,
                "__doc__": admin_class.__doc__})
        super().register(model_or_iterable, admin_class, **options)


class OasstAdminConfig(AdminConfig):
    """Installed in place of ``django.contrib.admin``: `admin.site`, which every app registers on,
    is an `OasstAdminSite`."""

    default_site = "oasst.admin_site.OasstAdminSite"
