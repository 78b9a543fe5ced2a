"""What the compiled-kernel tests share: the compiler mark, autograd node names, a small fast-q batch."""
import shutil

import pytest
import torch

from cnnlab.network.models import create

# The machines cnnlab is tested on have a C compiler; where one is missing the kernels are skipped
# by design (and the fallback tests still run).
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the kernels fall back to ATen")


def graph(t) -> set[str]:
    """The names of the autograd nodes behind t."""
    names, visited, todo = set(), set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in visited:
            visited.add(id(node))
            names.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    return names


def fast_q_batch():
    """fast-q (seed 0) with its whitening set, channels-last, and a batch of 8 images with labels."""
    torch.manual_seed(0)
    model = create("fast-q").to(memory_format=torch.channels_last)
    model.data_init(torch.randn(64, 3, 32, 32))
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    return model, x, torch.randint(0, 10, (8,))
