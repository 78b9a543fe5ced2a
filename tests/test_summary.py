"""cnnlab shape / summary: the arithmetic against the real modules, and the CLI's output."""
import json

import pytest
import torch
import torch.nn as nn

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.network.models import MODELS, create
from cnnlab.network.layers import parse_layer, totals, trace
from cnnlab.network.summary import compare, record_leaves, summarize


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("chw", [(3, 32, 32), (3, 40, 28)])
def test_summary_matches_the_real_model(name, chw):
    model = create(name, image_size=chw[1:])
    rows = summarize(model, chw)
    assert totals(rows)["params"] == sum(p.numel() for p in model.parameters())
    measured = [out for _, _, _, out in record_leaves(model, [1, *chw])]
    assert [r.out_shape for r in rows] == measured


def test_text_layers_match_torch_layers():
    rows = trace([2, 3, 32, 32], [parse_layer(t) for t in
                                  ["conv(8,k=5,s=2,p=1)", "bn", "gelu", "avgpool(3,s=2,p=1,ceil=true)",
                                   "conv(4,k=3x1,d=2,p=same)", "maxpool(2,p=1)", "flatten", "dropout(0.2)", "fc(7)"]])
    net = nn.Sequential(nn.Conv2d(3, 8, 5, 2, 1), nn.BatchNorm2d(8), nn.GELU(),
                        nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.Conv2d(8, 4, (3, 1), dilation=2, padding="same"),
                        nn.MaxPool2d(2, padding=1), nn.Flatten(), nn.Dropout(0.2), nn.LazyLinear(7))
    x, shapes = torch.zeros(2, 3, 32, 32), []
    for layer in net:
        x = layer(x)
        shapes.append(list(x.shape))
    assert [r.out_shape for r in rows] == shapes
    assert totals(rows)["params"] == sum(p.numel() for p in net.parameters())


def test_exercise_1_from_the_command_line(capsys):
    assert main(["shape", "1,1,32,32", "conv(out=1,k=7,s=1,p=same)", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "P = 3" in out
    assert "floor((32 + 2*3 - 7)/1) + 1 = 32" in out
    assert "(32 + 2P - 7)/1 + 1 = 32" in out
    assert "[1, 1, 32, 32]" in out


def test_report_network_from_the_command_line(capsys):
    layers = ["conv(16,k=3,p=same)", "relu", "maxpool(2)", "conv(32,k=3,p=1)", "relu", "maxpool(2)",
              "flatten", "linear(10)"]
    assert main(["shape", "128,3,32,32", *layers, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["out_shape"] for r in result["layers"]][-3:] == [[128, 32, 8, 8], [128, 2048], [128, 10]]
    assert result["output"] == [128, 10]
    assert result["params"] == 25_578


@pytest.mark.parametrize("text,message", [
    ("convv(3)", "did you mean 'conv'"),
    ("conv(16,k=3,q=1)", "no argument 'q'"),
    ("conv(k=3)", "needs out"),
    ("maxpool(2", "cannot read the layer"),
])
def test_layer_typos_are_clear_errors(text, message):
    with pytest.raises(CnnlabError, match=message):
        parse_layer(text)


@pytest.mark.parametrize("layers,message", [
    (["conv(0,k=3)"], "output size must be a positive integer"),
    (["flatten", "linear(2.5)"], "output size must be a positive integer"),
    (["dropout(1.5)"], "between 0 and 1"),
    (["conv(4,k=3,s=2,p=same)"], "needs stride 1"),
    (["linear(3)"], "put flatten before it"),
])
def test_impossible_layers_are_clear_errors(layers, message):
    with pytest.raises(CnnlabError, match=message):
        trace([1, 3, 8, 8], [parse_layer(t) for t in layers])


def test_impossible_chain_is_explained_in_numbers(capsys):
    assert main(["shape", "1,1,4,4", "conv(1,k=7)"]) == 2
    err = capsys.readouterr().err
    assert "kernel 7 with dilation 1 spans 7 pixels but the padded input has only 4" in err
    assert err.count("\n") == 1


def test_discussion_padding_1_is_the_same_network(capsys):
    result = compare("seed", "seed-p1")
    assert result["same_shapes"] and result["same_params"]
    assert result["max_abs_diff"] == 0.0
    assert main(["summary", "--compare", "seed", "seed-p1"]) == 0
    assert "are the same network" in capsys.readouterr().out
