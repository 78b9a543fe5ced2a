"""The report as one self-contained HTML page: inline CSS, images as PNG data URIs, no scripts.

Every value that comes from a run, its data or its files goes through esc() (html.escape)
at the point where it is inserted, so a class folder named '<img src=x onerror=alert(1)>'
shows as that text. A Content-Security-Policy allows nothing from the network and no
script at all, as a second guard.
"""
from __future__ import annotations

import base64
import html
import time

from .. import __version__
from ..data.decode import recorded
from .style import CSS

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str, cls: str = "") -> str:
    if not png:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img src="{uri}" alt="{esc(alt)}"' + (f' class="{esc(cls)}"' if cls else "") + ">"


def figure(png: bytes, alt: str, caption: str, wide: bool = True) -> str:
    """A figure; a wide one scrolls sideways on a phone instead of shrinking past reading."""
    if not png:
        return ""
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><div class="frame">{img(png, alt)}</div>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def fmt(v, digits: int = 2, unit: str = "") -> str:
    if v is None or isinstance(v, float) and v != v:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def setting_text(v) -> str:
    """A setting as a reader writes it: no Python reprs (None, True, {'flip': ...})."""
    if v is None:
        return "not set"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(setting_text(x) for x in v) or "none"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {setting_text(x)}" for k, x in v.items()) or "none"
    return str(v)


def flat_settings(settings: dict, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, text) rows of nested settings, keys as --set spells them (augment.flip)."""
    rows = []
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            rows += flat_settings(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", setting_text(v)))
    return rows


def dataset_name(config: dict) -> str:
    """The data a run was trained and tested on: its folder's name and fingerprint."""
    data = config.get("data") or {}
    name = str(data.get("source") or "-").rstrip("/").rsplit("/", 1)[-1]
    fp = str(data.get("fingerprint") or "")[:12]
    return f"{name} (fingerprint {fp})" if fp else name


def kv(pairs) -> str:
    def text(v) -> str:
        return v if isinstance(v, str) else setting_text(v) if v is None or isinstance(v, (bool, dict, list, tuple)) \
            else fmt(v)
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(text(v))}</dd>" for k, v in pairs)
    return f'<dl class="kv">{rows}</dl>'


def table(head: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """An HTML table; every cell is escaped (a cell given as ('html', s) is inserted as built here)."""
    def cell(i, v, tag):
        cls = ' class="n"' if i in numeric else (' class="name"' if i == 0 else "")
        if isinstance(v, tuple) and len(v) == 3:  # ('html', markup built here, css class)
            cls = f' class="{v[2]}"'
        body = v[1] if isinstance(v, tuple) and v[0] == "html" else esc(v)
        return f"<{tag}{cls}>{body}</{tag}>"
    th = "".join(cell(i, h, "th") for i, h in enumerate(head))
    tr = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table></div>'


def cards(pairs) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>' for k, v in pairs) + "</div>"


def key_numbers(run: dict) -> list[tuple[str, str]]:
    ev, config, history = run["eval"] or {}, run["config"], run["history"]
    # an unfinished run has no metrics.json: its history tells how far it got
    last = history[-1] if history else {}
    m = {"val_acc": last.get("val_acc"), "epochs": len(history) or None,
         "train_seconds": last.get("elapsed_s"), **run["metrics"]}
    stopped = run.get("unfinished")
    if stopped:  # where the last checkpoint stands, not a finished count
        m["epochs"] = f"unfinished: epoch {stopped['epoch']}, step {stopped['step']}"
        m["train_seconds"] = stopped["elapsed"]
    elif stopped is not None:
        m["epochs"] = "unfinished"
    return [("test accuracy", fmt(ev.get("test_acc", m.get("test_acc")), 2, " %")),
            ("validation accuracy", fmt(m.get("val_acc"), 2, " %")),
            ("mean test loss", fmt(ev.get("mean_loss"), 4)),
            ("calibration error (ECE)", fmt(100 * ev["ece"], 2, " %") if ev.get("ece") is not None else "-"),
            ("parameters", fmt(m.get("params", config.get("params")))),
            ("epochs", fmt(m.get("epochs"))),
            ("training time", fmt(m.get("train_seconds"), 1, " s"))]


def per_class_table(ev: dict) -> str:
    rows = []
    for r in ev["per_class"]:
        acc = r["accuracy"]
        bar = ("html", f'<span class="bar" style="width:{max(0.0, min(acc or 0, 100)) * 0.5:.1f}px"></span> '
                       f"{esc(fmt(acc, 1, ' %'))}", "acc")
        rows.append([r["class"], bar, fmt(r["precision"], 1, " %"), fmt(r["recall"], 1, " %"), fmt(r["support"])])
    return table(["class", "accuracy", "precision", "recall", "images"], rows, {2, 3, 4})


def run_section(run: dict, anchor: str, heading: str) -> str:
    """Everything about one run."""
    config, ev, figs = run["config"], run["eval"], run["figures"]
    cfg, data = config["config"], config["data"]
    out = [f'<section class="run" id="{esc(anchor)}">', heading]
    out += [f'<p class="note">{esc(n)}</p>' for n in run["notes"]]
    out.append(cards(key_numbers(run)))
    if run["curves"]:
        out += ["<h3>Training curves</h3>", figure(run["curves"], "training curves",
                "Validation accuracy and average training loss per epoch (history.csv).")]
    if ev:
        tta = f", test-time augmentation {ev['tta']}" if ev.get("tta", "none") != "none" else ""
        out += ["<h3>Per class</h3>",
                f"<p>Test split: {esc(fmt(ev['correct']))} of {esc(fmt(ev['total']))} images right "
                f"({esc(fmt(ev['test_acc'], 3, ' %'))}{esc(tta)}). A class's accuracy is the share of its "
                f"test images labelled right (its recall); precision is the share right among the images "
                f"predicted as that class.</p>", per_class_table(ev)]
        if ev["most_confused"]:
            out += ["<h3>Most confused pairs</h3>", table(
                ["true class", "predicted as", "images", "% of true class"],
                [[p["true"], p["predicted"], p["count"], fmt(p["percent_of_true"], 1, " %")]
                 for p in ev["most_confused"]], {2, 3})]
        out += ["<h3>Confusion matrix</h3>", figure(figs.get("confusion.png", b""), "confusion matrix",
                "Rows: true class; columns: predicted class. Left: counts; right: percent of each true class.")]
        out += ["<h3>Most confident mistakes</h3>", figure(figs.get("mistakes.png", b""), "confident mistakes",
                "The test images the model got wrong with the highest probability: true class, "
                "predicted class, probability.")]
        out += ["<h3>Calibration</h3>", figure(figs.get("calibration.png", b""), "reliability diagram",
                f"Accuracy against confidence in {ev.get('ece_bins', 15)} bins; a calibrated model follows "
                f"the diagonal. Expected calibration error {fmt(100 * (ev.get('ece') or 0), 2)} %.", wide=False)]
    if run["samples"]:
        rows = [[name, ("html", img(png, f"test images of class {name}", "strip"))]
                for name, png in zip(data["classes"], run["samples"])]
        out += ["<h3>Sample test images per class</h3>", table(["class", "images"], rows)]
    out.append(run.get("inspect_html", ""))  # built and escaped in report/inspection.py
    if run["model_table"]:
        out += ["<h3>Model</h3>", f"<p>{esc(cfg['model'])}: the table of <code>cnnlab summary</code> "
                f"(output shapes, parameters, multiply-adds, receptive field, size arithmetic).</p>",
                f"<pre>{esc(run['model_table'])}</pre>"]
    recipe = cfg.get("recipe")
    out += ["<h3>Recipe and configuration</h3>"]
    if recipe:
        about = f" (as shipped: {esc(cfg['description'])})" if cfg.get("description") else ""
        out.append(f"<p>Recipe <code>{esc(recipe)}</code>{about}. The table is this run's own settings, "
                   f"as it resolved them (keys as <code>--set</code> takes them).</p>")
    out.append(kv(sorted(row for row in flat_settings(cfg) if row[0] not in ("description", "recipe"))))
    counts = ", ".join(f"{k} {data.get(k)}" for k in ("train", "val", "test") if k in data)
    out += ["<h3>Data</h3>", kv([("source", data.get("source", "-")), ("fingerprint", data.get("fingerprint", "-")),
            ("classes", ", ".join(data["classes"])), ("images", counts),
            ("image size", "{0} x {0}, resized by {1}".format(*recorded(config))),
            ("mean / std", f"{_floats(data.get('mean'))} / {_floats(data.get('std'))}")])]
    machine = config.get("machine") or {}
    out += ["<h3>Machine, versions and times</h3>", kv(
        [("device", config.get("device", "-")), ("precision", config.get("precision", "-")),
         ("threads", config.get("threads", "-")), ("threads from", config.get("threads_from", "-"))]
        + [(k, v) for k, v in machine.items() if v is not None]
        + [(f"{k} version", v) for k, v in (config.get("versions") or {}).items()]
        + [("training time", fmt(run["metrics"].get("train_seconds"), 1, " s")),
           ("evaluation time", fmt((ev or {}).get("seconds"), 2, " s")),
           ("run folder", run["path"]), ("command", config.get("command", "-"))])]
    out.append("</section>")
    return "\n".join(out)


def _floats(values) -> str:
    return "-" if not values else "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def comparison(runs: list[dict], curves_png: bytes) -> str:
    """The runs side by side: key numbers, overlaid curves, per-class accuracy, settings that differ."""
    names = [r["name"] for r in runs]
    head = ["", *names]
    keys = [k for k, _ in key_numbers(runs[0])]
    rows = [["model", *[r["config"]["config"]["model"] for r in runs]]]
    rows += [[k, *[dict(key_numbers(r))[k] for r in runs]] for k in keys]
    out = ['<section id="compare"><h2>Runs side by side</h2>', table(head, rows, set(range(1, len(head))))]
    if curves_png:
        out += ["<h3>Training curves</h3>", figure(curves_png, "training curves of all runs",
                "Validation accuracy and training loss per epoch, one line per run.")]
    classes = runs[0]["config"]["data"]["classes"]
    if all(r["eval"] and r["config"]["data"]["classes"] == classes for r in runs):
        rows = [[c, *[fmt(r["eval"]["per_class"][i]["accuracy"], 1, " %") for r in runs]]
                for i, c in enumerate(classes)]
        out += ["<h3>Accuracy per class</h3>", table(["class", *names], rows, set(range(1, len(head))))]
    cfgs = [dict(flat_settings(r["config"]["config"])) for r in runs]
    differ = sorted(k for k in set().union(*cfgs) if k not in ("out", "description")
                    and len({c.get(k, "-") for c in cfgs}) > 1)
    if differ:
        out += ["<h3>Settings that differ</h3>",
                table(["setting", *names], [[k, *[c.get(k, "-") for c in cfgs]] for k in differ])]
    out.append("</section>")
    return "\n".join(out)


def render(runs: list[dict], curves_png: bytes = b"", groups_html: str = "", n_groups: int = 0) -> str:
    """The whole page for one run, a comparison page for several, and the groups' section if any."""
    if len(runs) == 1 and not groups_html:
        title = f"cnnlab report: {runs[0]['name']}"
        lead = (f"{runs[0]['config']['config']['model']} · tested on {dataset_name(runs[0]['config'])} · "
                f"{runs[0]['path']}")
        body = [run_section(runs[0], "run-1", "")]
    else:
        what = [f"{n_groups} group{'s' if n_groups != 1 else ''}"] if groups_html else []
        what += [f"{len(runs)} run{'s' if len(runs) != 1 else ''}"] if runs else []
        title = f"cnnlab report: {' and '.join(what)}"
        tested = sorted({dataset_name(r["config"]) for r in runs})
        lead = " · ".join(r["name"] for r in runs) or "groups of seeds"
        if tested:
            lead += " · tested on " + ", ".join(tested)
        links = ['<a href="#groups">groups</a>'] if groups_html else []
        links += ['<a href="#compare">side by side</a>'] if len(runs) > 1 else []
        links += [f'<a href="#run-{i}">{esc(r["name"])}</a>' for i, r in enumerate(runs, 1)]
        body = ['<nav class="toc">' + "".join(links) + "</nav>", groups_html]
        body += [comparison(runs, curves_png)] if len(runs) > 1 else []
        body += [run_section(r, f"run-{i}", f"<h2>Run {i}: {esc(r['name'])}</h2>") for i, r in enumerate(runs, 1)]
    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", "<main>",
        f"<header><h1>{esc(title)}</h1><p class=\"lead\">{esc(lead)}</p></header>", *body,
        f"<footer>Made by cnnlab {esc(__version__)} on {esc(stamp)}. One self-contained file: "
        f"no scripts, nothing loaded from the network.</footer>", "</main>", "</body>", "</html>", ""])
