from django.urls import path

from ranking import views

urlpatterns = [
    path("", views.leaderboard, name="leaderboard"),
    path("<slug:frame>/", views.leaderboard, name="leaderboard-frame"),
]
