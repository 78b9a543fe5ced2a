"""Property: any recipe within the schema's declared ranges either trains (two steps, on a tiny
folder) or is refused in one line before its run folder exists; it never crashes mid-run.

The recipes are drawn from cnnlab.recipes.schema itself (each field's type, Literal choices and
min/max/gt/lt), so a new field or range is covered without editing this test. Fields without an
upper bound are drawn up to a cap past the tiny images' 32 pixels, where those bounds bite.
"""
import dataclasses
import math
import types
import typing
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cnnlab.errors import CnnlabError
from cnnlab.network import models
from cnnlab.recipes.schema import Recipe
from cnnlab.runs import fit
from cnnlab.training.loop import TrainConfig
from cnnlab.training.seeds import MAX_SEED

from conftest import make_image_folder

CAP_INT, CAP_FLOAT = 40, 10.0  # upper ends for fields that declare none
SKIP = {"recipe", "description", "target_acc", "model"}  # names and notes, not settings


def _number(hint, meta) -> st.SearchStrategy:
    low = meta.get("min", meta.get("gt", 0))
    if hint is int:
        high = meta.get("max", meta.get("lt", CAP_INT + 1) - 1 if "lt" in meta else CAP_INT)
        return st.integers(int(math.ceil(low)) + ("gt" in meta), max(int(high), int(low) + 1))
    high = meta.get("max", meta.get("lt", CAP_FLOAT))
    return st.floats(low, high, exclude_min="gt" in meta, exclude_max="lt" in meta and "max" not in meta,
                     allow_nan=False, allow_infinity=False)


def strategy(hint, meta) -> st.SearchStrategy:
    """Values of one schema field, within its declared type and limits."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return table(hint)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy(a, meta) for a in typing.get_args(hint) if a is not type(None)])
    if origin is tuple:
        return st.tuples(*(strategy(a, meta) for a in typing.get_args(hint)))
    if hint is bool:
        return st.booleans()
    if hint is str:  # val_size as a percentage
        return st.integers(0, 99).map(lambda p: f"{p}%")
    if hint is dict:  # by_precision: settings for either arithmetic, in range themselves
        return st.sampled_from([{}, {"fp32": {"epochs": 1}}, {"bf16": {"batch_size": 4}},
                                {"fp32": {"optimizer": {"lr": 0.5}}, "bf16": {"augment.flip": "random"}}])
    return _number(hint, meta)


def table(cls) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy(hints[f.name], f.metadata) for f in dataclasses.fields(cls) if f.name not in SKIP}
    return st.fixed_dictionaries(fields)


def recipes() -> st.SearchStrategy:
    return st.tuples(table(Recipe), st.sampled_from(sorted(models.MODELS)), st.integers(0, MAX_SEED))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("prop") / "tiny", n_train=8, n_test=3)


runs = count()


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(recipes())
def test_any_recipe_in_range_trains_or_is_refused_before_its_folder(tiny, tmp_path_factory, drawn):
    fields, model, seed = drawn
    out = tmp_path_factory.getbasetemp() / "prop-runs" / f"run-{next(runs)}"
    base = TrainConfig.from_dict({**fields, "model": model})
    cfg = dataclasses.replace(base, seed=seed, data=str(tiny), out=str(out), max_steps=2, device="cpu",
                              precision="fp32")
    try:
        metrics = fit.run_train(cfg, log=lambda line: None)
    except CnnlabError as e:
        assert "\n" not in str(e)
        if out.exists():  # refused mid-run: only a loss or weights gone non-finite may do that
            assert (out / "config.json").is_file() and ("non-finite" in str(e) or "became" in str(e)), str(e)
        return
    assert metrics["steps"] <= 2 and 0 <= metrics["test_acc"] <= 100
