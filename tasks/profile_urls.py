"""The contributor's profile area, under /profile/."""

from django.urls import path

from tasks import profile_views as views

urlpatterns = [
    path("", views.profile, name="profile"),
    path("settings/", views.profile_settings, name="profile-settings"),
    path("token/", views.profile_token, name="profile-token"),
    path("data/", views.profile_data, name="profile-data"),
    path("delete/", views.profile_delete, name="profile-delete"),
    path("logout-everywhere/", views.profile_logout_everywhere, name="profile-logout-everywhere"),
]
