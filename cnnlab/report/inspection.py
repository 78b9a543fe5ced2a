"""The report's look inside the network: first-layer filters, and for a few right and wrong
test images, every conv and pool layer's first channels and the Grad-CAM overlay.

    part = gather(run_dir, config, data)    # {"filters": png, "images": [...], "notes": [...]}
    html = section(part, classes)           # '' when there is nothing to show

The pictures come from cnnlab.runs.inspect (the same as 'cnnlab inspect'); Grad-CAM needs
Captum (pip install 'cnnlab[explain]'); without it the section says so and shows the rest.
Every caption that holds data (class names) is escaped where it is inserted.
"""
from __future__ import annotations

import warnings

from ..errors import CnnlabError, CnnlabWarning
from .page import esc, figure

RIGHT, WRONG = 2, 2


def gather(run_dir, config: dict, data) -> dict:
    """The section's pictures for a run whose test data are loaded (data None: filters only)."""
    from ..analysis import attribution
    from ..runs import load_run
    from ..runs.inspect import filter_pngs, inspect_images, right_and_wrong
    part = {"filters": b"", "images": [], "notes": [], "cam_layer": None}
    try:
        _, model = load_run(run_dir)
        model.eval()
        info = config["data"]
        size = info["image_size"]
        part["filters"] = filter_pngs(model, (3, size, size))["filters.png"]
        if data is None:
            return part
        idx = right_and_wrong(model, data.test_x, data.test_y, info["mean"], info["std"], RIGHT, WRONG)
        labels = [info["classes"][int(data.test_y[i])] for i in idx]
        use_captum = attribution.available()
        if not use_captum:
            part["notes"].append(f"No Grad-CAM: Captum is not installed ({attribution.INSTALL}).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CnnlabWarning)
            items, part["cam_layer"] = inspect_images(
                model, data.test_x[idx], info["mean"], info["std"], info["classes"],
                [f"test image #{i}" for i in idx], labels, attribution=use_captum, overview_only=True)
        part["images"] = items
    except CnnlabError as e:  # a run without weights, a model without convs: say so, show the rest
        part["notes"].append(f"No look inside the network: {e}")
    return part


def section(part: dict | None) -> str:
    """The HTML of the section ('' without pictures)."""
    if not part or not (part["filters"] or part["images"] or part["notes"]):
        return ""
    out = ["<h3>Inside the network</h3>"]
    out += [f'<p class="note">{esc(n)}</p>' for n in part["notes"]]
    if part["filters"]:
        out.append(figure(part["filters"], "first-layer filters",
                          "The first conv layer's filters as RGB patches, each scaled to its own range: "
                          "mid grey is 0, the scale (max |w|) is under each patch. 'cnnlab inspect' "
                          "draws these and more for any image."))
    for item in part["images"]:
        verdict = "right" if item.label == item.top[0][0] else "wrong"
        cam = f"; Grad-CAM at {part['cam_layer']} for {item.target}" if part["cam_layer"] else ""
        out.append(figure(item.pngs["overview.png"], f"feature maps of {item.name}",
                          f"{item.name} ({verdict}): true class {item.label}, predicted {item.top[0][0]} "
                          f"({100 * item.top[0][1]:.1f} %){cam}. Each row: a conv or pool layer's "
                          f"first channels, with its output shape."))
        if part["cam_layer"]:
            out.append(figure(item.pngs["attribution.png"], f"attribution of {item.name}",
                              f"{item.name}: Grad-CAM and integrated gradients for {item.target}, and the top classes."))
    return "\n".join(out)
