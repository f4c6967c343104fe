"""manage.py portal_key: makes the signing key once, never replaces it, prints the public half."""

from __future__ import annotations

import io
import stat

import pytest
from django.core.management import CommandError, call_command

from agents.protocol.security import SigningKey, load_public_key


def run(settings, path) -> tuple[str, str]:
    settings.SWITCHBOARD_SIGNING_KEY = path
    out, err = io.StringIO(), io.StringIO()
    call_command("portal_key", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_made_once_then_kept(settings, tmp_path) -> None:
    path = tmp_path / "keys" / "portal.pem"
    first, said = run(settings, path)
    assert "made a new signing key" in said
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = SigningKey.load(path)
    assert first == key.public_pem()
    load_public_key(first)  # a PEM the nodes can load
    assert (tmp_path / "keys" / "portal.pem.pub").read_text() == first
    before = path.read_bytes()
    again, said = run(settings, path)
    assert "kept the existing signing key" in said and key.key_id in said
    assert again == first and path.read_bytes() == before


def test_an_unreadable_key_is_a_clear_error(settings, tmp_path) -> None:
    path = tmp_path / "portal.pem"
    path.write_text("not a key\n")
    with pytest.raises(CommandError, match=f"the portal signing key {path} cannot be used"):
        run(settings, path)
