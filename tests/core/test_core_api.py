"""The public API of `prime_trl.core`: names and positional argument orders that the trainer relies on."""

import inspect
import subprocess
import sys

import pytest
import torch

import prime_trl.core as core

POSITIONAL = {
    "implicit_process_rewards": ["prm_logps", "ref_logps", "mask", "beta"],
    "sequence_implicit_rewards": ["prm_logps", "ref_logps", "mask", "beta"],
    "normalize_process_rewards": ["rewards", "mask"],
    "prm_ce_loss": ["prm_logps", "ref_logps", "mask", "labels", "beta", "reduction"],
    "rloo_returns": [
        "process_rewards", "outcome_scores", "mask", "num_generations",
        "process_coef", "outcome_coef", "gamma_process", "gamma_outcome",
    ],
    "masked_whiten": ["values", "mask"],
    "ppo_clip_loss": ["logps", "old_logps", "advantages", "mask", "epsilon_low", "epsilon_high"],
    "accuracy_filter": ["scores", "num_generations", "low", "high"],
    "outcome_scores": ["rewards_per_func", "weights"],
    "prm_labels": ["labels_per_func", "weights"],
    "prm_pairwise_accuracy": ["process_rewards", "scores", "mask", "num_generations"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_argument_order(name):
    parameters = list(inspect.signature(getattr(core, name)).parameters)
    expected = POSITIONAL[name]
    assert parameters[: len(expected)] == expected
    assert name in core.__all__


def test_defaults():
    assert inspect.signature(core.prm_ce_loss).parameters["reduction"].default == "mean"
    ppo = inspect.signature(core.ppo_clip_loss).parameters
    assert (ppo["epsilon_low"].default, ppo["epsilon_high"].default) == (0.2, 0.2)
    flt = inspect.signature(core.accuracy_filter).parameters
    assert (flt["low"].default, flt["high"].default) == (0.2, 0.8)


def test_core_imports_torch_only():
    code = (
        "import sys, prime_trl.core; bad = {'transformers', 'trl', 'accelerate', 'datasets'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mask_dtype_does_not_matter():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(4, 3, generator=generator)
    other = torch.randn(4, 3, generator=generator)
    scores = torch.tensor([1.0, 0.0, 0.5, 0.5])
    long_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    calls = {
        "implicit_process_rewards": lambda m: core.implicit_process_rewards(values, other, m, 0.1),
        "normalize_process_rewards": lambda m: core.normalize_process_rewards(values, m),
        "prm_ce_loss": lambda m: core.prm_ce_loss(values, other, m, scores, 0.1, reduction="none"),
        "rloo_returns": lambda m: core.rloo_returns(values, scores, m, 2, gamma_process=0.9),
        "masked_whiten": lambda m: core.masked_whiten(values, m),
        "ppo_clip_loss": lambda m: core.ppo_clip_loss(values, other, other, m)[0],
        "prm_pairwise_accuracy": lambda m: core.prm_pairwise_accuracy(values, scores, m, 2),
        "min_form_rewards": lambda m: core.min_form_rewards(values, m),
    }
    for name, call in calls.items():
        expected = call(long_mask)
        for mask in (long_mask.bool(), long_mask.float()):
            torch.testing.assert_close(call(mask), expected, msg=name)
