"""cnnlab.analysis.metrics against direct computations, numpy and PyTorch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cnnlab.analysis import metrics


def random_case(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, k))
    labels = rng.integers(0, k, n)
    return logits, labels


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_confusion_matrix_counts_every_pair(n, k, seed):
    logits, labels = random_case(n, k, seed)
    predicted = logits.argmax(1)
    cm = metrics.confusion_matrix(labels, predicted, k)
    direct = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(labels, predicted):
        direct[t, p] += 1
    assert np.array_equal(cm, direct)
    hist, _, _ = np.histogram2d(labels, predicted, bins=[np.arange(k + 1)] * 2)  # numpy's own count
    assert np.array_equal(cm, hist.astype(np.int64))
    assert cm.sum(axis=1).tolist() == np.bincount(labels, minlength=k).tolist()
    assert metrics.accuracy(cm) == pytest.approx(100.0 * (predicted == labels).mean())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_per_class_matches_a_direct_computation(n, k, seed):
    logits, labels = random_case(n, k, seed)
    predicted = logits.argmax(1)
    pc = metrics.per_class(metrics.confusion_matrix(labels, predicted, k))
    for c in range(k):
        mine = labels == c
        said = predicted == c
        if mine.any():
            assert pc["accuracy"][c] == pytest.approx(100.0 * (predicted[mine] == c).mean())
            assert pc["recall"][c] == pc["accuracy"][c]
        else:
            assert np.isnan(pc["accuracy"][c])
        expected_precision = 100.0 * (labels[said] == c).mean() if said.any() else 0.0
        assert pc["precision"][c] == pytest.approx(expected_precision)
        assert pc["support"][c] == int(mine.sum())


def test_softmax_and_loss_match_pytorch_even_for_huge_logits():
    logits, labels = random_case(50, 10, 1)
    logits[0] = [1000.0] + [0.0] * 9  # a naive exp overflows here
    t = torch.from_numpy(logits)
    assert np.allclose(metrics.softmax(logits), torch.softmax(t, 1).numpy())
    assert metrics.mean_loss(logits, labels) == pytest.approx(
        float(F.cross_entropy(t, torch.from_numpy(labels))), rel=1e-12)


def test_most_confused_are_the_largest_off_diagonal_cells():
    cm = np.array([[50, 3, 9], [7, 40, 0], [9, 1, 60]])
    assert metrics.most_confused(cm, 3) == [(0, 2, 9), (2, 0, 9), (1, 0, 7)]  # ties by cell order
    assert metrics.most_confused(np.diag([5, 5]), 3) == []  # no mistakes, no pairs


def ece_direct(probs, labels, n_bins):
    """ECE with an explicit loop over right-closed bins (b/n, (b+1)/n]."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if b else (conf >= 0) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return total


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 80), k=st.integers(2, 6), bins=st.integers(1, 20), seed=st.integers(0, 10_000))
def test_reliability_bins_and_ece_match_a_direct_loop(n, k, bins, seed):
    logits, labels = random_case(n, k, seed)
    probs = metrics.softmax(logits)
    r = metrics.reliability(probs, labels, bins)
    assert sum(r["count"]) == n
    assert metrics.expected_calibration_error(r) == pytest.approx(ece_direct(probs, labels, bins), abs=1e-12)


def test_ece_of_a_perfectly_calibrated_case_is_zero_and_of_an_overconfident_one_is_the_gap():
    # four images at confidence 0.75, three of them right: calibrated
    probs = np.array([[0.75, 0.25]] * 4)
    assert metrics.expected_calibration_error(metrics.reliability(probs, np.array([0, 0, 0, 1]), 10)) == 0
    # all at 0.9, half right: gap 0.4
    probs = np.array([[0.9, 0.1]] * 4)
    assert metrics.expected_calibration_error(metrics.reliability(probs, np.array([0, 1, 0, 1]), 10)) \
        == pytest.approx(0.4)


def test_confident_mistakes_are_the_wrong_ones_by_falling_probability():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.99, 0.01]])
    labels = np.array([0, 0, 1, 0, 1])
    assert metrics.confident_mistakes(probs, labels, 2) == [(4, 0, 0.99), (1, 1, 0.8)]
    assert len(metrics.confident_mistakes(probs, labels, 10)) == 4
