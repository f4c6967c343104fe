from django.urls import path

from portal.accounts import views

app_name = "accounts"

# Mounted at the site's root: the admin pages sit under /access/ beside roles and grants, a
# person's own tokens under /account/.
urlpatterns = [
    path("access/users/", views.user_list, name="users"),
    path("access/users/new/", views.user_create, name="user-new"),
    path("access/users/<int:pk>/", views.user_detail, name="user"),
    path("access/tokens/", views.all_tokens, name="all-tokens"),
    path("account/tokens/", views.my_tokens, name="tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("account/second-factor/", views.my_second_factor, name="otp-enrol"),
    # The login's second step, beside Django's /login/ (portal/urls.py).
    path("login/verify/", views.second_factor_verify, name="otp-verify"),
]
