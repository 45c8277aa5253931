from __future__ import annotations

import pytest

from core.errors import ValidationFailed
from core.security.secrets import PREFIX, SecretBox, SecretUnreadable


def test_a_sealed_value_opens_with_the_same_key() -> None:
    box = SecretBox("deployment-key")
    sealed = box.seal("Bearer s3cret-tøken")
    assert sealed.startswith(PREFIX)
    assert "s3cret" not in sealed
    assert box.open(sealed) == "Bearer s3cret-tøken"
    assert SecretBox("deployment-key").open(sealed) == "Bearer s3cret-tøken"


def test_another_key_cannot_open_it() -> None:
    sealed = SecretBox("deployment-key").seal("s3cret")
    with pytest.raises(SecretUnreadable):
        SecretBox("rotated-key").open(sealed)


def test_a_tampered_value_is_refused() -> None:
    box = SecretBox("deployment-key")
    sealed = box.seal("s3cret")
    middle = len(PREFIX) + (len(sealed) - len(PREFIX)) // 2
    swapped = "A" if sealed[middle] != "A" else "B"
    tampered = sealed[:middle] + swapped + sealed[middle + 1 :]
    with pytest.raises(SecretUnreadable):
        box.open(tampered)


@pytest.mark.parametrize("value", ["s3cret", "", "enc:v0:abc"])
def test_a_value_that_was_never_sealed_is_refused(value: str) -> None:
    with pytest.raises(SecretUnreadable, match="not a sealed secret"):
        SecretBox("deployment-key").open(value)


def test_a_sealed_looking_value_that_is_no_token_is_refused() -> None:
    with pytest.raises(SecretUnreadable, match="cannot be read"):
        SecretBox("deployment-key").open(PREFIX + "not-a-token")


def test_an_unreadable_secret_is_a_validation_failure() -> None:
    assert issubclass(SecretUnreadable, ValidationFailed)
