"""Residual labels: every value Tracr can hold reads back as itself, of its own type."""

from __future__ import annotations

import pytest

from metamodels.transformer import compiled

VALUES = [0, 1, -3, 1.5, True, False, "a", "the cat", "0", "1", "1.5", "True", "(1, 2)", "'x'", '"', (1, "a"), ("0", 2),
          ((1, 2), "b")]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_label_reads_back_as_its_value(value):
    label = compiled.direction_label("v", value)
    name, colon, raw = label.partition(":")
    back = compiled.label_value(raw)
    assert (name, colon) == ("v", ":") and back == value and type(back) is type(value), (label, back)


def test_labels_are_tracrs_own_text_where_that_is_unambiguous():
    assert [compiled.direction_label("x", v) for v in (0, "a", (1, "a"))] == ["x:0", "x:a", "x:(1, 'a')"]
    assert compiled.direction_label("one") == "one"
    assert compiled.direction_label("tokens", "0") == "tokens:'0'"  # not the integer 0
