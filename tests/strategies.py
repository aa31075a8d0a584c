"""Hypothesis strategies more than one test module draws from."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["json_values"]


def json_values(
    *, text: int, keys: int, leaves: int, items: int = 4, finite: bool = True
) -> st.SearchStrategy[Any]:
    """Any JSON-like value: scalars (strings up to `text` long; floats finite unless not
    `finite`), lists of up to `items`, objects with keys up to `keys` long; `leaves` at most."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=not finite, allow_infinity=not finite)
        | st.text(max_size=text),
        lambda inner: (
            st.lists(inner, max_size=items) | st.dictionaries(st.text(max_size=keys), inner)
        ),
        max_leaves=leaves,
    )
