"""prm_placement="adapter": policy and PRM are two LoRA adapters on one frozen base (issue 6).

One short training run (module fixture) is instrumented at the two places where weights change:
- the policy's optimizer step (Trainer callbacks `on_pre_optimizer_step` / `on_optimizer_step`);
- the PRM's update (`trainer.prm.step`, and `trainer.prm._step`, its optimizer step).
The tests then read what the probes recorded. Parameters fall into three groups by name: the policy
adapter (".default."), the PRM adapter (".prm.") and the base (everything else).

This folder has no `__init__.py` on purpose: as a package, `tests/peft` would be importable as `peft`
under pytest's rootdir imports and shadow the PEFT library.
"""

from __future__ import annotations

import os

import pytest
import torch
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, TrainerCallback

from prime_trl import PRIMETrainer
from prime_trl.prm import CompletionBatch, completion_logps
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

POLICY, PRM, BASE = "policy", "prm", "base"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _group(name: str) -> str:
    if ".default." in name:
        return POLICY
    if ".prm." in name:
        return PRM
    return BASE


def _params(model, group: str) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if _group(n) == group}


def _snapshot(model, group: str) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in _params(model, group).items()}


def _changed(before: dict[str, torch.Tensor], model) -> list[str]:
    now = dict(model.named_parameters())
    return [n for n, t in before.items() if not torch.equal(t, now[n])]


def _with_grad(model, group: str) -> list[str]:
    """Names in `group` holding a gradient (zeroed grads count: something wrote to them)."""
    return [n for n, p in _params(model, group).items() if p.grad is not None]


class PolicyStepProbe(TrainerCallback):
    """Around each policy optimizer step: whose gradients exist, and whose weights the step changes."""

    def __init__(self, model):
        self.model = model
        self.records = []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._before = {g: _snapshot(self.model, g) for g in (POLICY, PRM, BASE)}
        self.records.append({f"grad_{g}": _with_grad(self.model, g) for g in (POLICY, PRM, BASE)})

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.records[-1].update({f"moved_{g}": _changed(self._before[g], self.model) for g in (POLICY, PRM, BASE)})


def _probe_prm_update(trainer) -> list[dict]:
    """Wrap the PRM phase (`prm.step`: forwards, backward, optimizer) and its optimizer step (`prm._step`)."""
    records, model = [], trainer.model
    step, opt_step = trainer.prm.step, trainer.prm._step

    def probed_step(*args, **kwargs):
        before = {g: _snapshot(model, g) for g in (POLICY, PRM, BASE)}
        out = step(*args, **kwargs)
        records.append({
            **{f"moved_{g}": _changed(before[g], model) for g in (POLICY, PRM, BASE)},
            "grad_policy_after": _with_grad(model, POLICY),
            "active_adapter_after": model.active_adapter,
        })
        return out

    def probed_opt_step():
        records.append({f"grad_{g}": _with_grad(model, g) for g in (POLICY, PRM, BASE)})
        return opt_step()

    trainer.prm.step, trainer.prm._step = probed_step, probed_opt_step
    return records


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("adapter-prm")
    # Bounds [0, 1] keep every group, so both the policy and the PRM get data on each step.
    args = cpu_config(tmp_path, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0, max_steps=2)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    trainer = PRIMETrainer(
        model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(), peft_config=lora
    )
    start = {g: _snapshot(trainer.model, g) for g in (POLICY, PRM, BASE)}
    policy_probe = PolicyStepProbe(trainer.model)
    trainer.add_callback(policy_probe)
    prm_records = _probe_prm_update(trainer)
    trainer.train()
    prm_phases = [r for r in prm_records if "moved_prm" in r]
    prm_opt_steps = [r for r in prm_records if "moved_prm" not in r]
    return trainer, start, policy_probe.records, prm_phases, prm_opt_steps


def test_default_placement_with_peft_is_adapter(trained):
    trainer = trained[0]
    assert trainer.prm_placement == "adapter"
    assert set(trainer.model.peft_config) == {"default", "prm"}
    assert trainer.prm_model is trainer.model
    assert trainer.model.active_adapter == "default"  # the policy is what generates and what TRL saves first


def test_both_adapters_move_base_does_not(trained):
    trainer, start = trained[0], trained[1]
    assert _changed(start[POLICY], trainer.model), "policy adapter never moved"
    assert _changed(start[PRM], trainer.model), "PRM adapter never moved"
    assert _changed(start[BASE], trainer.model) == []
    assert all(not p.requires_grad for p in _params(trainer.model, BASE).values())


def test_policy_optimizer_holds_only_policy_adapter(trained):
    trainer = trained[0]
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in _params(trainer.model, POLICY).values()}


def test_prm_optimizer_holds_only_prm_adapter(trained):
    trainer = trained[0]
    held = [p for group in trainer.prm.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in held} == {id(p) for p in _params(trainer.model, PRM).values()}
    assert len(held) == len(_params(trainer.model, PRM))


def test_policy_step_sees_no_prm_or_base_gradient_and_moves_only_the_policy(trained):
    policy_steps = trained[2]
    assert len(policy_steps) == 2
    for record in policy_steps:
        assert record["grad_policy"], "the policy's backward produced no gradient"
        assert record["grad_prm"] == []  # the policy's backward never reached the PRM adapter
        assert record["grad_base"] == []
        assert record["moved_policy"]
        assert record["moved_prm"] == [] and record["moved_base"] == []


def test_prm_update_sees_no_policy_gradient_and_moves_only_the_prm(trained):
    prm_phases, prm_opt_steps = trained[3], trained[4]
    assert len(prm_phases) == 2 and len(prm_opt_steps) == 2  # one generation (and one PRM step) per policy step
    for record in prm_opt_steps:
        assert record["grad_prm"], "the PRM's backward produced no gradient"
        assert record["grad_policy"] == []  # the PRM's backward never reached the policy adapter
        assert record["grad_base"] == []
    for record in prm_phases:
        assert record["moved_prm"]
        assert record["moved_policy"] == [] and record["moved_base"] == []
        # nothing left behind for the policy optimizer to apply, and the policy adapter is active again
        assert record["grad_policy_after"] == []
        assert record["active_adapter_after"] == "default"


def _toy_batch(tokenizer) -> CompletionBatch:
    """Two rows: chat prompts left-padded, completions right-padded, as GRPO lays them out."""
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q in ("What is 2 + 3?", "What is 12 + 30? Think step by step.")
    ]
    completions = ["The answer is 5.<|im_end|>", "Step 1: 12 + 30 = 42. The answer is \\boxed{42}.<|im_end|>"]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    completion_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
    P, T, pad = max(map(len, prompt_ids)), max(map(len, completion_ids)), tokenizer.pad_token_id
    rows, masks, completion_masks = [], [], []
    for p, c in zip(prompt_ids, completion_ids):
        rows.append([pad] * (P - len(p)) + p + c + [pad] * (T - len(c)))
        masks.append([0] * (P - len(p)) + [1] * (len(p) + len(c)) + [0] * (T - len(c)))
        completion_masks.append([1] * len(c) + [0] * (T - len(c)))
    return CompletionBatch(torch.tensor(rows), torch.tensor(masks), torch.tensor(completion_masks))


def test_reference_logps_equal_the_untouched_base_model(trained, tiny_model_dir):
    trainer = trained[0]
    batch = _toy_batch(trainer.processing_class)
    mask = batch.completion_mask.bool()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        expected = completion_logps(base, batch)  # (N, T)
        ref = trainer.prm.ref_logps(batch)
        with trainer.prm.placement.prm_scope() as prm:
            prm_logps = completion_logps(prm, batch)
        policy_logps = completion_logps(trainer.model, batch)  # active adapter: the policy
    torch.testing.assert_close(ref[mask], expected[mask], rtol=0, atol=1e-5)
    # Not vacuous: both trained adapters do change the log-probs, so "adapters off" really means off.
    assert (prm_logps - expected)[mask].abs().max() > 1e-4
    assert (policy_logps - expected)[mask].abs().max() > 1e-4
    assert trainer.model.active_adapter == "default"


def test_save_model_writes_both_adapters_and_they_reload(trained, tiny_model_dir, tmp_path):
    trainer = trained[0]
    out = str(tmp_path / "saved")
    trainer.save_model(out)
    assert os.path.isfile(os.path.join(out, "adapter_model.safetensors"))  # the policy, where TRL puts it
    assert os.path.isfile(os.path.join(out, "prm", "adapter_model.safetensors"))
    assert os.path.isfile(os.path.join(out, "prm", "adapter_config.json"))

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    loaded = PeftModel.from_pretrained(base, out)  # "default" = the policy
    loaded.load_adapter(os.path.join(out, "prm"), adapter_name="prm")
    trained_lora = {n: p for n, p in trainer.model.named_parameters() if _group(n) != BASE}
    loaded_lora = {n: p for n, p in loaded.named_parameters() if _group(n) != BASE}
    assert trained_lora.keys() == loaded_lora.keys()
    for name, p in trained_lora.items():
        assert torch.equal(loaded_lora[name], p.detach()), name
    # The two adapters are different weights, not one saved twice.
    policy_b = [p for n, p in loaded_lora.items() if ".lora_B.default." in n]
    prm_b = [p for n, p in loaded_lora.items() if ".lora_B.prm." in n]
    assert any(not torch.equal(a, b) for a, b in zip(policy_b, prm_b))
