"""The Django admin: DRF's token page is taken away (its tokens are no longer read; one made
there would be a plain key that never works). API tokens are made on the tokens pages."""

from django.contrib import admin
from rest_framework.authtoken.models import TokenProxy

if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)
