"""PRIME with LoRA and the PRM as a second adapter on a real pretrained checkpoint (SmolLM2-135M-Instruct).

What the toy models cannot exercise: a real BPE tokenizer and ChatML template (with a default system turn),
EOS = pad = `<|im_end|>`, tied input/output embeddings and the checkpoint's own generation_config. One 2-step
run (module fixture) serves every assertion; then the saved PRM adapter is reloaded with
`ImplicitPRM.from_pretrained` and scores an answer through the real tokenizer and chat template. The separate
placement runs on the same checkpoint through `prime-trl train` (test_cli_real.py).
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from prime_trl import ImplicitPRM, PRIMETrainer
from prime_trl.verifiers import math_reward
from prime_trl.word_problems import ABOUT_HALF_RIGHT, few_shot_prompt, word_problem_dataset
from tests.trainer.helpers import cpu_config

pytestmark = pytest.mark.slow
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM")  # fmt: skip


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _moved(before: dict[str, torch.Tensor], model) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.fixture(scope="module")
def run(smollm2_dir, tmp_path_factory):
    """Two PRIME steps of 2 prompts x 4 samples, 24 new tokens, the paper's accuracy band [0.2, 0.8]."""
    tmp_path = tmp_path_factory.mktemp("real-adapter")
    args = cpu_config(tmp_path, prm_placement="adapter", num_generations=4, per_device_train_batch_size=8,
                      max_completion_length=24, temperature=0.7, learning_rate=1e-3, prm_learning_rate=1e-4,
                      gradient_checkpointing=False, accuracy_lower_bound=0.2, accuracy_upper_bound=0.8)  # fmt: skip
    trainer = PRIMETrainer(model=smollm2_dir, reward_funcs=math_reward, args=args,
                           train_dataset=word_problem_dataset(ABOUT_HALF_RIGHT),
                           peft_config=LoraConfig(**LORA))  # fmt: skip
    start = _snapshot(trainer.model)
    kept_rows = []  # rows the PRM received per step (the filter's survivors)
    step = trainer.prm.step
    trainer.prm.step = lambda mode, batch, *a, **k: kept_rows.append(len(batch.input_ids)) or step(mode, batch, *a, **k)
    trainer.train()
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    return dict(trainer=trainer, start=start, kept_rows=kept_rows, saved=out)


def _logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_checkpoint_is_the_real_one(run):
    trainer = run["trainer"]
    tokenizer = trainer.processing_class
    assert trainer.model.get_base_model().config.tie_word_embeddings
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id
    text = tokenizer.apply_chat_template(few_shot_prompt("1 + 1?"), add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


def test_groups_reached_the_prm_and_it_updated(run):
    kept = _logged(run["trainer"], "filter/kept_fraction")
    # Seeded, so fixed on one platform; elsewhere, with each group in the band 75-88% of the time (the problems'
    # estimated success rates), all four groups of the run missing it has odds of 1 in 250 to 1 in 4,000.
    assert len(kept) == 2 and max(kept) > 0  # some group had a mixed outcome inside [0.2, 0.8]
    assert max(run["kept_rows"]) > 0 and sum(run["kept_rows"]) % 4 == 0  # whole groups of 4 samples
    losses = _logged(run["trainer"], "prm/loss")
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_policy_and_prm_adapters_move_and_the_base_does_not(run):
    trainer = run["trainer"]
    moved = _moved(run["start"], trainer.model)
    policy, prm = {n for n in moved if ".default." in n}, {n for n in moved if ".prm." in n}
    assert policy, "the policy adapter never moved"
    assert prm, "the PRM adapter never moved"
    assert moved == policy | prm  # the shared base, tied embedding included, is frozen
    base = trainer.model.get_base_model()
    assert base.lm_head.weight is base.model.embed_tokens.weight


def test_saved_prm_reloads_and_scores_with_the_chat_template(run):
    prm = ImplicitPRM.from_pretrained(str(run["saved"]))  # the base is the adapter's recorded base
    question = "Ann has 3 apples and gets 2 more. How many apples does Ann have?"
    response = "3 + 2 = 5.\n\nThe answer is \\boxed{5}."
    result = prm.score(few_shot_prompt(question), response)
    assert prm.render_prompt(few_shot_prompt(question)).startswith("<|im_start|>system\n")
    assert "".join(result.tokens).startswith(response)  # BPE tokens tile the response (EOS follows)
    assert len(result.steps) == 2 and result.steps[0] == "3 + 2 = 5.\n\n"
    rewards = torch.tensor(result.token_rewards)
    assert torch.isfinite(rewards).all()
    assert rewards.abs().max() > 0  # the PRM has left its reference: process rewards after an update
    assert result.sequence_reward == pytest.approx(sum(result.step_rewards), abs=1e-5)
