"""Wording shared by messages: counts with the right noun form."""
from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """'1 image', '2 images' (nouns gives an irregular plural)."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"
