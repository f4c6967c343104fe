from django.urls import path

from portal.rbac import views

app_name = "rbac"

urlpatterns = [
    path("", views.matrix, name="matrix"),
    path("operators/", views.operators, name="operators"),
    path("roles/<str:role>/settings/", views.role_settings, name="role-settings"),
    path("roles/<str:role>/grants/<str:agent>/", views.grant_edit, name="grant"),
]
