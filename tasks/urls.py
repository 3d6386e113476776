from django.urls import path

from tasks import views

urlpatterns = [
    path("", views.home, name="home"),
    path("terms/", views.terms, name="terms"),
    path("language/", views.language, name="language"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/available/", views.available, name="available"),
    path("tasks/new/", views.task_new, name="task-new"),
    path("tasks/<uuid:task_id>/", views.task_page, name="task"),
    path("tasks/<uuid:task_id>/submit/", views.task_submit, name="task-submit"),
    path("tasks/<uuid:task_id>/done/", views.task_done, name="task-done"),
    path("tasks/<uuid:task_id>/skip/", views.task_skip, name="task-skip"),
    path("preview/", views.preview, name="preview"),
    path("lang-check/", views.lang_check, name="lang-check"),
    path("messages/<uuid:message_id>/report/", views.message_report, name="message-report"),
]
