"""The online implicit PRM on a fixed labelled batch: it learns, and its update modes do what they say."""

import copy

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from prime_trl.core import prm_pairwise_accuracy
from prime_trl.prm import CompletionBatch, OnlinePRM, SeparatePRM

G = 4


@pytest.fixture
def fixed_batch(tiny_model_dir):
    torch.manual_seed(0)
    prompt = torch.randint(3, 300, (8, 5))
    completion = torch.randint(3, 300, (8, 7))
    completion_mask = torch.ones(8, 7, dtype=torch.long)
    completion_mask[1, 5:] = 0  # a padded row
    completion[1, 5:] = 0
    batch = CompletionBatch(
        torch.cat([prompt, completion], 1), torch.cat([torch.ones_like(prompt), completion_mask], 1), completion_mask
    )
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 1.0])  # two groups of 4, one fractional label
    return batch, labels


def _online_prm(model_dir, lr=1e-3, num_mini_batches=1, micro_batch_size=3):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return OnlinePRM(
        SeparatePRM(copy.deepcopy(model), model), Accelerator(cpu=True), beta=0.05, learning_rate=lr,
        weight_decay=0.0, max_grad_norm=10.0, micro_batch_size=micro_batch_size, num_mini_batches=num_mini_batches,
    )


def test_repeated_updates_raise_accuracy_and_lower_loss(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    prm = _online_prm(tiny_model_dir)
    ref = prm.ref_logps(batch)
    losses, accuracies = [], []
    for _ in range(15):
        rewards, metrics = prm.update(batch, ref, labels)
        losses.append(metrics["loss"])
        accuracies.append(prm_pairwise_accuracy(rewards, labels, batch.completion_mask, G).item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)  # PRM == ref: sigma(0) = 1/2
    assert accuracies[0] == 0.5  # all rewards exactly 0: every pair a tie
    assert losses[-1] < losses[0] - 0.01
    final = prm_pairwise_accuracy(prm.score(batch, ref), labels, batch.completion_mask, G).item()
    assert final > 0.9


def test_after_mode_rewards_come_from_the_pre_update_forward(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    prm = _online_prm(tiny_model_dir, lr=1e-2)
    ref = prm.ref_logps(batch)
    prm.update(batch, ref, labels)  # move the PRM away from the reference first
    before = prm.score(batch, ref)
    rewards, _ = prm.step("after", batch, ref, labels)
    torch.testing.assert_close(rewards, before)
    assert not torch.allclose(prm.score(batch, ref), before)  # the optimizer step did happen


def test_before_mode_scores_with_the_updated_prm(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    prm = _online_prm(tiny_model_dir, lr=1e-2)
    ref = prm.ref_logps(batch)
    rewards, metrics = prm.step("before", batch, ref, labels)
    torch.testing.assert_close(rewards, prm.score(batch, ref))
    assert rewards.abs().sum() > 0 and "loss" in metrics


def test_none_mode_leaves_the_prm_unchanged(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    prm = _online_prm(tiny_model_dir)
    params = [p.clone() for p in prm.parameters]
    rewards, metrics = prm.step("none", batch, prm.ref_logps(batch), labels)
    assert metrics == {} and rewards.abs().sum() == 0
    assert all(torch.equal(a, b) for a, b in zip(params, prm.parameters))


def test_micro_batching_does_not_change_the_update(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    one, many = _online_prm(tiny_model_dir, micro_batch_size=8), _online_prm(tiny_model_dir, micro_batch_size=3)
    for prm in (one, many):
        prm.update(batch, prm.ref_logps(batch), labels)
    for a, b in zip(one.parameters, many.parameters):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_mini_batches_take_one_optimizer_step_each(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    prm = _online_prm(tiny_model_dir, num_mini_batches=3)
    prm.update(batch, prm.ref_logps(batch), labels)
    assert prm.optimizer.state[prm.parameters[0]]["step"].item() == 3


def test_empty_batch_is_a_no_op(tiny_model_dir, fixed_batch):
    batch, labels = fixed_batch
    prm = _online_prm(tiny_model_dir)
    empty = batch.rows(torch.tensor([], dtype=torch.long))
    rewards, metrics = prm.update(empty, prm.ref_logps(empty), labels[:0])
    assert rewards.shape == (0, 7) and metrics["loss"] == 0.0


def test_gradient_buckets_cover_every_parameter_once_and_respect_dtype_and_size():
    from prime_trl.prm import _gradient_buckets

    params = [torch.nn.Parameter(torch.zeros(n, dtype=d)) for n, d in
              [(5, torch.float32), (5, torch.float32), (20, torch.float32), (3, torch.bfloat16), (4, torch.float32)]]
    buckets = _gradient_buckets(params, max_numel=12)
    assert [[p.numel() for p in b] for b in buckets] == [[5, 5], [20], [3], [4]]
    assert sum(len(b) for b in buckets) == len(params)
    assert all(len({p.dtype for p in b}) == 1 for b in buckets)
