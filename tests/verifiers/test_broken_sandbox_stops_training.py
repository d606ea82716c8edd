"""End to end: PRIMETrainer with the code verifier on a machine whose sandbox cannot be set up stops at its
first step with the verifier's message; it does not train on a batch of zeros."""

import json

import pytest
import torch

from prime_trl import PRIMETrainer
from prime_trl.verifiers import SandboxUnavailable, make_code_reward, sandbox, sandbox_check
from tests.trainer.helpers import cpu_config, toy_dataset

pytestmark = pytest.mark.slow


def test_training_stops_at_the_first_step(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox_check, "_PROBED", {})
    real = sandbox._python_dirs
    monkeypatch.setattr(sandbox, "_python_dirs", lambda: real() + ["/nonexistent-prime-dir"])  # setup fails
    tests = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})
    dataset = toy_dataset(8).map(lambda row: {"ground_truth": tests})
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=make_code_reward(timeout_s=1.0),
                           args=cpu_config(tmp_path, max_steps=1), train_dataset=dataset)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with pytest.raises(SandboxUnavailable, match="sandbox setup failed.*\nFix: "):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
