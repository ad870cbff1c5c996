"""Hypothesis strategies for the text and JSON a caller may send, hostile parts included.

Shared by the property tests of both transports: the characters Postgres cannot hold (U+0000,
lone surrogates), whitespace of every kind (Python and Postgres disagree on some), numbers at
and beyond the JSON safe range, NaN and infinities, and nesting.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from agent_engine._models import JSON_SAFE_INTEGER

_AWKWARD = ["\x00", " ", "\t", "\n", "\r", "\x0b", "\x1c", "\x85", "\xa0", "\u180e", "\u200b",
            "\u2028", "\u3000", "\ufeff", "\\", "'", '"', "%", "$", "é", "😀"]  # fmt: skip

characters = st.one_of(
    st.characters(exclude_categories=[]),  # every code point but surrogates, U+0000 included
    st.characters(categories=["Cs"]),  # lone surrogates
    st.sampled_from(_AWKWARD),
)

texts = st.text(characters, max_size=40)
"""Any text, including what Postgres cannot store."""

_numbers = st.one_of(
    st.integers(min_value=-JSON_SAFE_INTEGER - 2, max_value=JSON_SAFE_INTEGER + 2),
    st.sampled_from([0, -1, JSON_SAFE_INTEGER, -JSON_SAFE_INTEGER, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.1, -0.0, 5e-324, 1e15 + 0.5, 1e16, 1e300, 2.0**53]),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | _numbers | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
"""Any JSON-shaped value, including NaN, huge numbers and unstorable text."""
