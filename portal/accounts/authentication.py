"""``Authorization: Token <secret>`` for the API and the audit export, on our hashed tokens.

The header and keyword are DRF's (``TokenAuthentication``), so scripts written for the old
tokens keep working; the lookup, the refusals and the note of use are ``tokens.authenticate_key``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from portal.accounts.models import ApiToken
from portal.accounts.tokens import TokenRefused, authenticate_key


class ApiTokenAuthentication(TokenAuthentication):
    """DRF authentication by an ``ApiToken``: a 401 saying why for an unknown, revoked or
    expired token or a deactivated account."""

    keyword = "Token"
    model = ApiToken

    def authenticate_credentials(self, key: Any) -> tuple[User, ApiToken]:
        try:
            token = authenticate_key(str(key))
        except TokenRefused as exc:
            raise AuthenticationFailed(str(exc)) from exc
        return token.user, token
