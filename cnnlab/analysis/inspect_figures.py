"""Pictures of what a network computes: filter grids, feature-map grids, attribution overlays.

    image, boxes = filter_grid(w)              # uint8 (H, W, 3): one patch per filter, exact pixels
    png = grid_png(image)                       # its PNG bytes
    fig = feature_map_figure(maps[0], "conv1", [1, 16, 32, 32])   # a matplotlib Figure
    png = figure_png(fig)

Filter grids are composed pixel by pixel with numpy and Pillow, so a patch in the PNG is
the filter itself: each filter is scaled to its own range, w / max|w| mapped to 0..255
with 0 at mid grey (128), and enlarged by a whole number of pixels per weight; the label
under it gives that max|w| (the scale). Everything else is drawn with matplotlib's
object-oriented API (matplotlib.figure.Figure; pyplot and the global backend are never
touched). Text that comes from data (class names, file names) is drawn as plain text: '$'
is escaped, TeX is off.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SOFTWARE = "cnnlab"  # the PNGs' Software tag, as on cnnlab's other figures
RC = {"text.usetex": False, "font.size": 8, "axes.titlesize": 8}
BACKGROUND = (255, 255, 255)


def plain(text) -> str:
    """Text for matplotlib that can never turn into mathtext."""
    return str(text).replace("$", r"\$")


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def filter_pixels(weights) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (out, in, kH, kW) pixel values, float (out,) scales) of conv weights: each filter
    divided by its own max|w| (its scale), mapped to round(127.5 + 127.5 * w / scale)."""
    w = np.asarray(weights, dtype=np.float64)
    scale = np.abs(w).reshape(len(w), -1).max(axis=1)
    safe = np.where(scale > 0, scale, 1.0)
    pixels = np.round(127.5 + 127.5 * w / safe[:, None, None, None])
    return np.clip(pixels, 0, 255).astype(np.uint8), scale


def patch_px(k: int, target: int = 48) -> int:
    """Screen pixels per weight: a whole number, so patches stay exact."""
    return max(1, target // max(1, k))


def _compose(patches: list[list[np.ndarray]], title: str, cell_labels=None, row_labels=None,
             col_labels=None) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """A white canvas with patches[r][c] (h, w, 3) uint8 at fixed places and labels drawn
    around them; returns the canvas and each patch's top-left corner (x, y)."""
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text):
        return int(math.ceil(probe.textlength(text, font=font))) if text else 0
    ph, pw = patches[0][0].shape[:2]
    n_rows, n_cols = len(patches), max(len(r) for r in patches)
    gap, line = 6, 15
    cell_w = max([pw] + [width(t) for row in (cell_labels or []) for t in row]) + gap
    cell_h = ph + (line if cell_labels else 0) + gap
    left = max([width(t) for t in (row_labels or [])], default=0) + (gap if row_labels else 0) + gap
    top = line + 4 + (line if col_labels else 0) + gap
    canvas = Image.new("RGB", (max(left + n_cols * cell_w + gap, width(title) + 2 * gap),
                               top + n_rows * cell_h + gap), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 4), title, fill=(0, 0, 0), font=font)
    arr = np.array(canvas)
    corners = []
    for r, row in enumerate(patches):
        corners.append([])
        for c, patch in enumerate(row):
            x, y = left + c * cell_w + (cell_w - gap - pw) // 2, top + r * cell_h
            arr[y:y + ph, x:x + pw] = patch
            corners[-1].append((x, y))
    canvas = Image.fromarray(arr)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(cell_labels or []):
        for c, text in enumerate(row):
            x = left + c * cell_w + (cell_w - gap - width(text)) // 2
            draw.text((x, top + r * cell_h + ph + 1), text, fill=(60, 60, 60), font=font)
    for r, text in enumerate(row_labels or []):
        draw.text((gap, top + r * cell_h + max(0, ph - line) // 2), text, fill=(60, 60, 60), font=font)
    for c, text in enumerate(col_labels or []):
        x = left + c * cell_w + (cell_w - gap - width(text)) // 2
        draw.text((x, top - line - gap // 2), text, fill=(60, 60, 60), font=font)
    return np.array(canvas), corners


def _enlarge(patch: np.ndarray, px: int) -> np.ndarray:
    return patch.repeat(px, axis=0).repeat(px, axis=1)


def filter_grid(weights, name: str = "conv", columns: int = 8) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The filters of a conv layer whose input is the image, one patch each: RGB for 3 input
    channels, grey otherwise (channels side by side). Returns the canvas and each filter's
    patch corner (x, y); a patch is pixels_per_weight = patch_px(kW) screen pixels per weight."""
    pixels, scale = filter_pixels(weights)
    n, c, kh, kw = pixels.shape
    px = patch_px(max(kh, kw))
    if c == 3:
        tiles = [_enlarge(p.transpose(1, 2, 0), px) for p in pixels]
    else:  # each input channel as a grey square, side by side
        tiles = [_enlarge(np.concatenate(list(p), axis=1)[..., None].repeat(3, axis=2), px) for p in pixels]
    columns = max(1, min(columns, n))
    rows = [tiles[i:i + columns] for i in range(0, n, columns)]
    labels = [[f"#{i} \u00b1{scale[i]:.2g}" for i in range(j, min(j + columns, n))] for j in range(0, n, columns)]
    title = (f"{name}: {n} filters of {c}x{kh}x{kw}, each on its own scale: grey = 0, "
             f"extremes = \u00b1scale (max |w|, under each)")
    canvas, corners = _compose(rows, title, cell_labels=labels)
    return canvas, [xy for row in corners for xy in row]


def channel_filter_grid(weights, name: str, max_out: int = 16, max_in: int = 16) -> np.ndarray:
    """A deeper conv layer's filters per input channel: one row per filter (output channel),
    one grey patch per input channel, each row scaled to its filter's max|w|."""
    pixels, scale = filter_pixels(weights)
    n, c, kh, kw = pixels.shape
    shown_out, shown_in = min(n, max_out), min(c, max_in)
    px = patch_px(max(kh, kw), 24)
    rows = [[_enlarge(pixels[o, i][..., None].repeat(3, axis=2), px) for i in range(shown_in)]
            for o in range(shown_out)]
    more = f" (first {shown_out} of {n} filters, {shown_in} of {c} input channels)" if (n, c) != (shown_out, shown_in) else ""
    title = f"{name}: filters of {c}x{kh}x{kw}, one row per filter, one patch per input channel{more}"
    canvas, _ = _compose(rows, title, row_labels=[f"#{o} \u00b1{scale[o]:.2g}" for o in range(shown_out)],
                         col_labels=[f"in {i}" for i in range(shown_in)])
    return canvas


def grid_png(canvas: np.ndarray) -> bytes:
    buf = io.BytesIO()
    info = _pnginfo()
    Image.fromarray(canvas).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _pnginfo():
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("Software", SOFTWARE)
    return info


def figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib Figure, tagged as cnnlab's."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": SOFTWARE})
    return buf.getvalue()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def feature_map_figure(maps, name: str, shape, max_channels: int = 64):
    """One layer's output on one image, (C, H, W): a grid of its channels on one shared colour
    scale, titled with the layer's name and output shape from the shape arithmetic."""
    import matplotlib
    maps = np.asarray(maps, dtype=np.float32)
    c = len(maps)
    shown = min(c, max_channels)
    cols = min(8, shown)
    rows = math.ceil(shown / cols)
    lo, hi = float(maps[:shown].min()), float(maps[:shown].max())
    with matplotlib.rc_context(RC):
        fig = _figure(1.3 * cols + 0.8, 1.3 * rows + 0.5)
        axes = fig.subplots(rows, cols, squeeze=False)
        im = None
        for i, ax in enumerate(axes.flat):
            _off(ax)
            if i >= shown:
                ax.set_axis_off()
                continue
            im = ax.imshow(maps[i], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1,
                           interpolation="nearest")
            ax.set_title(f"ch {i}", pad=2)
        more = f", first {shown} of {c} channels" if shown < c else ""
        fig.suptitle(plain(f"{name}: output {list(shape)}{more}"))
        fig.colorbar(im, ax=axes, shrink=0.8)
    return fig


def input_figure(image, normalized, title: str = ""):
    """The image as the model gets it: the decoded RGB pixels and the three normalized
    channels ((x/255 - mean) / std) that enter the first layer."""
    import matplotlib
    norm = np.asarray(normalized, dtype=np.float32)
    with matplotlib.rc_context(RC):
        fig = _figure(1.6 * (1 + len(norm)) + 0.6, 2.0)
        axes = fig.subplots(1, 1 + len(norm), squeeze=False)[0]
        axes[0].imshow(np.asarray(image).transpose(1, 2, 0), interpolation="nearest")
        axes[0].set_title(f"pixels {list(np.asarray(image).shape)}")
        lim = float(np.abs(norm).max()) or 1.0
        im = None
        for i, ax in enumerate(axes[1:]):
            im = ax.imshow(norm[i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(f"normalized {'RGB'[i] if len(norm) == 3 else i}")
        for ax in axes:
            _off(ax)
        fig.colorbar(im, ax=list(axes[1:]), shrink=0.8)
        fig.suptitle(plain(title))
    return fig


def _grey(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).mean(axis=0) / 255.0


def attribution_figure(image, top, title: str, cam=None, ig=None, target_name: str = ""):
    """The image, its top classes, and (when given) the Grad-CAM map and the integrated
    gradients (|attribution| summed over channels) overlaid on it."""
    import matplotlib
    panels = 2 + (cam is not None) + (ig is not None)
    rgb = np.asarray(image).transpose(1, 2, 0)
    with matplotlib.rc_context(RC):
        fig = _figure(2.1 * panels, 2.4)
        axes = fig.subplots(1, panels, squeeze=False)[0]
        axes[0].imshow(rgb, interpolation="nearest")
        axes[0].set_title("image")
        i = 1
        if cam is not None:
            cam = np.asarray(cam, dtype=np.float32)
            axes[i].imshow(_grey(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[i].imshow(cam / (cam.max() or 1.0), cmap="jet", alpha=0.5, vmin=0, vmax=1,
                           interpolation="bilinear")
            axes[i].set_title(plain(f"Grad-CAM: {target_name}"))
            i += 1
        if ig is not None:
            heat = np.abs(np.asarray(ig, dtype=np.float32)).sum(axis=0)
            axes[i].imshow(_grey(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[i].imshow(heat / (heat.max() or 1.0), cmap="hot", alpha=0.6, vmin=0, vmax=1,
                           interpolation="nearest")
            axes[i].set_title(plain(f"integrated gradients: {target_name}"))
            i += 1
        for ax in axes[:i]:
            _off(ax)
        bars = axes[i]
        names = [plain(c) for c, _ in top][::-1]
        bars.barh(range(len(top)), [100 * p for _, p in top][::-1], color="#4c72b0")
        bars.set_yticks(range(len(top)), names)
        bars.set_xlim(0, 100)
        bars.set_xlabel("probability (%)")
        bars.set_title("top classes")
        fig.suptitle(plain(title))
    return fig


def layers_overview(image, maps: dict, shapes: dict, channels: int = 8, max_layers: int = 8, cam=None,
                    title: str = ""):
    """One compact figure for one image: the image (and Grad-CAM), then one row per conv or
    pool layer (at most max_layers, evenly spread) with its first channels, each row on its
    own colour scale, labelled with the layer's name and output shape."""
    import matplotlib
    names = list(maps)
    if len(names) > max_layers:
        keep = sorted({round(i * (len(names) - 1) / (max_layers - 1)) for i in range(max_layers)})
        names = [names[i] for i in keep]
    cols = channels
    with matplotlib.rc_context(RC):
        fig = _figure(1.05 * (cols + 1) + 1.2, 1.1 * (len(names) + 1) + 0.3)
        axes = fig.subplots(len(names) + 1, cols + 1, squeeze=False)
        for ax in axes.flat:
            _off(ax)
            ax.set_frame_on(False)
        axes[0, 0].imshow(np.asarray(image).transpose(1, 2, 0), interpolation="nearest")
        axes[0, 0].set_title("image")
        if cam is not None:
            axes[0, 1].imshow(_grey(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[0, 1].imshow(np.asarray(cam) / (float(np.max(cam)) or 1.0), cmap="jet", alpha=0.5,
                              vmin=0, vmax=1, interpolation="bilinear")
            axes[0, 1].set_title("Grad-CAM")
        for r, name in enumerate(names, 1):
            m = np.asarray(maps[name][0], dtype=np.float32)
            lo, hi = float(m[:cols].min()), float(m[:cols].max())
            axes[r, 0].text(0.0, 0.5, plain(f"{name}\n{list(shapes[name])}"), va="center", ha="left",
                            transform=axes[r, 0].transAxes)
            for c in range(min(cols, len(m))):
                axes[r, c + 1].imshow(m[c], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1,
                                      interpolation="nearest")
        fig.suptitle(plain(title))
    return fig
