"""Secrets sealed at rest, and a deployment's key replaced without losing them."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from shared.sealing import SealedWithAnotherKey, Sealer

VARIABLE = "LODESTAR_TEST_KEY"


def key() -> str:
    return Fernet.generate_key().decode()


def test_a_value_opens_only_with_the_key_that_sealed_it() -> None:
    sealer = Sealer(key(), VARIABLE)
    sealed = sealer.seal({"refresh_token": "Atzr|secret"})
    assert b"Atzr" not in sealed
    assert sealer.open(sealed) == {"refresh_token": "Atzr|secret"}
    with pytest.raises(SealedWithAnotherKey, match=VARIABLE):
        Sealer(key(), VARIABLE).open(sealed)
    with pytest.raises(SealedWithAnotherKey, match=f"{VARIABLE} is unset"):
        Sealer("", VARIABLE).open(sealed)
    with pytest.raises(RuntimeError, match=f"{VARIABLE} is unset"):
        Sealer(" ", VARIABLE).seal({})


def test_a_key_is_replaced_by_naming_the_new_one_first() -> None:
    old, new = key(), key()
    sealed = Sealer(old, VARIABLE).seal({"a": 1})
    both = Sealer(f"{new}, {old}", VARIABLE)
    assert both.replacing and not Sealer(new, VARIABLE).replacing
    assert both.open(sealed) == {"a": 1}
    # New values, and old ones sealed again, need only the new key.
    assert Sealer(new, VARIABLE).open(both.seal({"b": 2})) == {"b": 2}
    again = both.sealed_again(sealed)
    assert Sealer(new, VARIABLE).open(again) == {"a": 1}
    with pytest.raises(SealedWithAnotherKey):
        Sealer(old, VARIABLE).open(again)
    with pytest.raises(SealedWithAnotherKey, match=VARIABLE):
        both.sealed_again(Sealer(key(), VARIABLE).seal({}))


_ONE, _TWO = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.mark.parametrize(
    ("keys", "bad"),
    [
        ("not-a-key", "1st"),
        (f"{_ONE},short", "2nd"),
        # Fernet alone would read each of these as the first key and drop the rest.
        (f"{_ONE};{_TWO}", "1st"),
        (f"{_ONE} {_TWO}", "1st"),
        (f"{_ONE}\n{_TWO}", "1st"),
        (f"{_ONE}x", "1st"),
        (f"{_TWO},{_ONE}=", "2nd"),
    ],
)
def test_a_key_that_is_no_fernet_key_is_refused_naming_the_variable(keys: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"{VARIABLE}: the {bad} key must be a Fernet key"):
        Sealer(keys, VARIABLE)
