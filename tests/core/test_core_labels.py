"""Outcome reward and PRM label from reward-function outputs: hand-computed values and a loop oracle."""

import math

import pytest
import torch

from prime_trl.core import LABEL_TRANSFORMS, outcome_scores, prm_labels

NAN = float("nan")


def loop_prm_labels(labels_per_func, weights):
    """Slow oracle: per row, sum w*l / sum w over the functions with w > 0 and a value; NaN if none."""
    out = []
    for row in labels_per_func.tolist():
        pairs = [(w, v) for w, v in zip(weights.tolist(), row) if w > 0 and not math.isnan(v)]
        out.append(sum(w * v for w, v in pairs) / sum(w for w, _ in pairs) if pairs else NAN)
    return out


def test_outcome_is_the_weighted_sum_any_range():
    # accuracy, format, overlong penalty; weights 1, 0.5, 1
    rewards = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0], [1.0, NAN, -0.5], [NAN, NAN, NAN]])
    weights = torch.tensor([1.0, 0.5, 1.0])
    # 1 + 0.5 + 0 = 1.5; 0 + 0.5 - 1 = -0.5; 1 + (None skipped) - 0.5 = 0.5; nothing scored -> NaN
    scores = outcome_scores(rewards, weights)
    assert scores[:3].tolist() == [1.5, -0.5, 0.5]
    assert math.isnan(scores[3])


def test_label_is_the_weighted_mean_of_the_label_functions():
    # label functions: accuracy (weight 2) and a second verifier (weight 1); the penalty (weight 0) is not one
    labels_per_func = torch.tensor([[1.0, 0.0, -1.0], [1.0, NAN, 0.0], [NAN, NAN, -1.0], [0.5, 1.0, 0.0]])
    weights = torch.tensor([2.0, 1.0, 0.0])
    # (2*1 + 1*0)/3 = 2/3; second verifier None -> 2*1/2 = 1; no label function scored -> NaN; (2*0.5 + 1)/3 = 2/3
    labels = prm_labels(labels_per_func, weights)
    torch.testing.assert_close(labels[[0, 1, 3]], torch.tensor([2 / 3, 1.0, 2 / 3]))
    assert math.isnan(labels[2])


def test_label_transforms():
    r = torch.tensor([-1.0, 0.0, 1.0])
    assert LABEL_TRANSFORMS["identity"](r).tolist() == [-1.0, 0.0, 1.0]
    assert LABEL_TRANSFORMS["signed"](r).tolist() == [0.0, 0.5, 1.0]  # (r + 1) / 2
    # sigma(-1) = 1 / (1 + e) = 0.26894, sigma(0) = 0.5, sigma(1) = 0.73106
    torch.testing.assert_close(LABEL_TRANSFORMS["sigmoid"](r), torch.tensor([0.268941, 0.5, 0.731059]))


@pytest.mark.parametrize("num_funcs", [1, 3])
def test_prm_labels_match_loop(generator, num_funcs):
    values = torch.rand(32, num_funcs, generator=generator)
    values[torch.rand(values.shape, generator=generator) < 0.3] = NAN
    weights = torch.rand(num_funcs, generator=generator) + 0.1
    weights[0] = 0.0 if num_funcs > 1 else weights[0]
    expected = torch.tensor(loop_prm_labels(values, weights))
    torch.testing.assert_close(prm_labels(values, weights), expected, equal_nan=True)
