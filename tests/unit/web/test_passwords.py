from __future__ import annotations

from core.settings import Settings
from web.passwords import reset_link


def test_the_link_carries_the_token_in_its_fragment() -> None:
    assert reset_link(Settings(), "t0k") == "http://localhost:8080/reset-password#token=t0k"
    custom = Settings(password_reset_url="https://app.example.test/reset")
    assert reset_link(custom, "t0k") == "https://app.example.test/reset#token=t0k"
