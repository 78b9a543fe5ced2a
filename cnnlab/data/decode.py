"""The one image decoder: any file Pillow opens -> uint8 RGB (3, size, size), the same everywhere.

    arr = load_image("photo.jpg", 64, "crop")          # numpy uint8 (3, 64, 64); raises if unreadable
    arr, why = decode_or_reason("photo.jpg", 64)       # (array, None) or (None, one-line reason)

Training, validation and test (cnnlab.data.imagefolder), evaluate, predict, `data show`, the
report's sample images and the export check all decode through this module, so a file is the
same pixels wherever it is read. What happens to an image, in order:
  1. its EXIF orientation is applied (a phone photo stored on its side is turned upright);
  2. it becomes RGB: grey, palette, CMYK and YCbCr are converted; 16-bit grey keeps its top 8
     bits; transparent parts are composited on BACKGROUND (white);
  3. it is fitted to size x size by the resize rule:
       crop    the shorter side is resized to size (bilinear, antialiased), then the centre
               square is cut out: the aspect ratio is kept (the default, as most libraries do);
       squash  the whole image is resized to size x size: nothing is cut off, shapes stretch.
Images already size x size are not resampled under either rule.

Runs trained before the rule was recorded squashed their image folders to 32 x 32 with an
earlier conversion (no EXIF, transparency dropped rather than composited): the rule LEGACY
reproduces it exactly, so such runs evaluate and predict on the pixels they were trained on.
identity() names the decoder (rule, size, Pillow's version) for the decoded-data cache's key.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import PIL
from PIL import Image, ImageOps

RULES = ("crop", "squash")  # what a recipe or --resize may choose
DEFAULT_RULE = "crop"
LEGACY = "squash-v1"  # image folders of runs from before the rule was recorded
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
DECODER_VERSION = 2  # bump when the conversion below changes: cached decodes are then redone


def identity(size: int, rule: str) -> str:
    """What decides the decoded pixels besides the files: part of the cache key, so an upgrade
    of Pillow or a change of rule or size decodes again."""
    return f"decoder={DECODER_VERSION}|pillow={PIL.__version__}|resize={rule}|size={size}"


def check_rule(rule: str) -> str:
    if rule not in (*RULES, LEGACY):
        raise ValueError(f"resize rule must be one of {', '.join(RULES)}, got {rule!r}")
    return rule


def to_rgb(im: Image.Image) -> Image.Image:
    """An RGB image from any mode: EXIF orientation applied, 16-bit scaled to 8, alpha on white."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: keep the pixels as stored
        pass
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.int64)
        # 16-bit grey keeps its top 8 bits; 32-bit integer images are clipped to 0..65535 first
        im = Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), "L")
    elif im.mode == "F":
        im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "PA") or "A" in im.mode or "transparency" in im.info:
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(back, rgba).convert("RGB")
    return im.convert("RGB")


def _legacy_rgb(im: Image.Image) -> Image.Image:
    """The conversion of runs from before the rule was recorded: EXIF ignored, alpha dropped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits
        arr = np.asarray(im).astype(np.int64) >> 8
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "LA", "PA", "RGBA"):
        im = im.convert("RGBA").convert("RGB")  # palette transparency, alpha dropped
    return im.convert("RGB")


def fit(im: Image.Image, size: int, rule: str = DEFAULT_RULE) -> Image.Image:
    """im fitted to size x size by the rule (see the module docstring)."""
    w, h = im.size
    if (w, h) == (size, size):
        return im
    if rule != "crop":  # squash, and the legacy rule (a squash, bilinear)
        return im.resize((size, size), Image.Resampling.BILINEAR)
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def _decode(path, size: int, rule: str) -> tuple[np.ndarray, bool]:
    """(uint8 (3, size, size), whether it was resampled); raises on an unreadable file."""
    with warnings.catch_warnings():
        # Pillow only warns between its pixel limit and twice it: refuse those bombs too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            rgb = _legacy_rgb(im) if rule == LEGACY else to_rgb(im)
            resized = rgb.size != (size, size)
            rgb = fit(rgb, size, rule)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy(), resized


def load_image(path, size: int, rule: str = DEFAULT_RULE) -> np.ndarray:
    """uint8 (3, size, size) from an image file; raises on anything that is not a readable image."""
    return _decode(path, size, check_rule(rule))[0]


def decode_one(path, size: int, rule: str = DEFAULT_RULE):
    """(array, resized?) or (None, one-line reason) for a file that is not a readable image.

    The reason's text before any colon is its short form (the warning that lists files uses it).
    """
    check_rule(rule)
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file"
        return _decode(path, size, rule)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return None, f"too many pixels, a possible decompression bomb: {e}"
    except Image.UnidentifiedImageError:
        return None, "not an image Pillow can read"
    except Exception as e:  # noqa: BLE001 - any failure to decode one file is reported, not fatal
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"


def decode_or_reason(path, size: int, rule: str = DEFAULT_RULE):
    """(array, None) or (None, one-line reason) for a file that is not a readable image."""
    arr, info = decode_one(path, size, rule)
    return (arr, None) if arr is not None else (None, info)


def recorded(config: dict) -> tuple[int, str]:
    """(image size, resize rule) a run was trained with, from its config.json contents.

    Runs from before the rule was recorded: 32 and, for an image folder, LEGACY (they squashed);
    a CIFAR-10 source was already 32 x 32, so their own images keep the default crop.
    """
    info = config.get("data", {})
    size = info.get("image_size", 32)
    if "resize" in info:
        return size, info["resize"]
    source = str(info.get("source") or config.get("config", {}).get("data") or "")
    cifar = source.endswith((".tar.gz", ".tgz", "cifar-10-batches-py")) or \
        os.path.isfile(os.path.join(source, "data_batch_1"))
    return size, DEFAULT_RULE if cifar else LEGACY
