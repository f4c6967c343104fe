from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal.audit.urls import urlpatterns as audit_urlpatterns
from portal.inventory.urls import api_urlpatterns as inventory_api_urlpatterns
from portal.inventory.urls import enrolment_urlpatterns
from portal.jobs import history
from portal.jobs.urls import api_urlpatterns

# The audit pages, with the two that join the jobs' replies (served by jobs, the app above).
audit_pages = [
    *audit_urlpatterns,
    path("jobs/<int:job_id>/", history.job_history, name="job"),
    path("nodes/<str:identity>/", history.node_history, name="node"),
]

# A host outside ALLOWED_HOSTS gets a 400 that says so (Django's own page is a bare "Bad Request").
handler400 = "portal.core.error_pages.bad_request"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Where a set-password link (the Users page's) leads: Django's reset views and tokens.
    path(
        "account/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "account/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("admin/", admin.site.urls),
    path("api/", include((api_urlpatterns + inventory_api_urlpatterns, "api"))),
    path("api/", include("portal.targeting.urls")),
    path("inventory/", include("portal.inventory.urls")),
    path("enrolment/", include(enrolment_urlpatterns)),
    path("audit/", include((audit_pages, "audit"))),
    path("", include("portal.accounts.urls")),  # /access/users/, /access/tokens/, /account/
    path("access/", include("portal.rbac.urls")),
    path("brokers/", include("portal.broker.urls")),
    path("", include("portal.jobs.urls")),
]
