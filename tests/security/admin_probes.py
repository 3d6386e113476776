"""Query strings that probe the admin's changelists, derived from each registered ModelAdmin so a new
admin is covered without a new line: the filters its sidebar offers (which must keep working) and
lookups it never declared (through a relation, or on a field no filter uses), which must be refused."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import SimpleListFilter
from django.db import models
from django.test import RequestFactory
from django.utils import timezone


def registered_admins() -> dict[str, admin.ModelAdmin]:
    """Every ModelAdmin of the default site, keyed by its URL prefix (``oasst/user``)."""
    return {f"{model._meta.app_label}/{model._meta.model_name}": model_admin
            for model, model_admin in admin.site._registry.items()}


def changelist_path(model_admin: admin.ModelAdmin) -> str:
    return f"/admin/{model_admin.opts.app_label}/{model_admin.opts.model_name}/"


def declared_filter_queries(model_admin: admin.ModelAdmin, user) -> list[str]:
    """The query strings of the choices the changelist's sidebar offers this user (the links a
    moderator clicks), and the date hierarchy's year, month and day."""
    request = RequestFactory().get(changelist_path(model_admin))
    request.user = user
    changelist = model_admin.get_changelist_instance(request)
    queries = [choice["query_string"] for spec in changelist.filter_specs for choice in spec.choices(changelist)]
    if model_admin.date_hierarchy:
        today = timezone.localdate()
        field = model_admin.date_hierarchy
        queries += [f"?{field}__year={today.year}", f"?{field}__year={today.year}&{field}__month={today.month}",
                    f"?{field}__year={today.year}&{field}__month={today.month}&{field}__day={today.day}"]
    return sorted({query for query in queries if query.strip("?")})


def declared_parameters(model_admin: admin.ModelAdmin, user) -> set[str]:
    """The parameters the changelist's filters read, as Django's ChangeList builds them."""
    request = RequestFactory().get(changelist_path(model_admin))
    request.user = user
    changelist = model_admin.get_changelist_instance(request)
    parameters = {name for spec in changelist.filter_specs for name in spec.expected_parameters()}
    return parameters | {item.parameter_name for item in model_admin.get_list_filter(request)
                         if isinstance(item, type) and issubclass(item, SimpleListFilter)}


def refused_lookups(model_admin: admin.ModelAdmin, user) -> list[str]:
    """Lookups no filter declares: every local field (as is, and with ``__contains``), and through
    every relation both the related model's primary key (``auth_token__key__startswith``: Django's own
    check lets a related primary key through) and one of its other fields."""
    lookups = []
    for field in model_admin.model._meta.get_fields():
        if field.is_relation and field.related_model is not None:
            related = field.related_model._meta
            lookups.append(f"{field.name}__{related.pk.name}__startswith")
            other = next((f for f in related.concrete_fields if not f.primary_key and not f.is_relation), None)
            if other is not None:
                lookups.append(f"{field.name}__{other.name}")
        elif isinstance(field, models.Field) and field.concrete:
            lookups += [field.name, f"{field.name}__contains"]
    declared = declared_parameters(model_admin, user)
    return [lookup for lookup in lookups if lookup not in declared]


def refused_lookup_examples(model_admin: admin.ModelAdmin, user) -> tuple[str, str]:
    """One refused lookup through a relation (to the related model's primary key), one on a local field."""
    lookups = refused_lookups(model_admin, user)
    return (next(lookup for lookup in lookups if lookup.endswith("__startswith")),
            next(lookup for lookup in lookups if "__" not in lookup))
