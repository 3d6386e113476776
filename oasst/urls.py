from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from oasst import api, views

api_v1 = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("auth/token/", api.TokenObtainView.as_view(), name="token"),
    path("users/me/", api.UserMeView.as_view(), name="users-me"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
]

handler404 = "oasst.views.page_not_found"
handler500 = "oasst.views.server_error"

admin.site.site_header = "OASST moderation"
admin.site.site_title = "OASST admin"
