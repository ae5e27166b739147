"""`foobar-ref dig` reads dig's free-form words."""

from __future__ import annotations

import pytest
import typer

from foobar_ref.cli.dns import parse_words

DEFAULT = ("127.0.3.1", 53)


def test_words_in_any_order() -> None:
    assert parse_words(["www.foobar.com"], DEFAULT) == ("www.foobar.com", "A", DEFAULT, set())
    assert parse_words(["+trace", "foobar.com", "mx", "@127.0.50.1#5353", "+TCP"], DEFAULT) == (
        "foobar.com",
        "MX",
        ("127.0.50.1", 5353),
        {"trace", "tcp"},
    )


@pytest.mark.parametrize("words", [[], ["a", "A", "extra"], ["a", "+short"]])
def test_bad_words_are_refused(words: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        parse_words(words, DEFAULT)
