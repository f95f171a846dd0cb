"""The `length` signal's two definitions: the seed README's token count (default) and its public code's
minus the UTF-8 byte length (`rewards.py`, `length_penalization`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rsforge.rewards.configs import LengthConfig
from rsforge.rewards.length import TokenCount


def test_tokens_is_the_default_and_negative_bytes_counts_utf8_bytes():
    captions, refs = ["two new buildings", "", "a café"], [["x"]] * 3
    assert TokenCount(LengthConfig(name="length"))(captions, refs).tolist() == [3.0, 0.0, 2.0]
    code = TokenCount(LengthConfig(name="length", mode="negative_bytes"))
    assert code(captions, refs).tolist() == [-17.0, 0.0, -7.0]  # "é" is two bytes


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValidationError, match="mode"):
        LengthConfig(name="length", mode="characters")
