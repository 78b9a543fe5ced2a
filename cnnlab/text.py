"""Wording shared by messages: counts with the right noun form, notes that several places print.

No imports beyond the standard library: the CLI builds its help texts from here.
"""
from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """'1 image', '2 images' (nouns gives an irregular plural)."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


# How predict (and its --help) says images are fitted to the model's input.
RESIZE_NOTE = ("images are fitted to the run's image size by the resize rule it was trained with: "
               "crop (the shorter side resized, the centre square cut out, the aspect kept) or "
               "squash (the whole image resized), exactly as training decoded its images")
