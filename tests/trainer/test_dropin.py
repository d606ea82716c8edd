"""GRPO setups train unchanged with PRIME: several reward functions and weights, penalties, +-1 scores, reward
models, a GRPOConfig. The PRM's label follows `prm_label_funcs`/`prm_label_transform` (checked on a hand-made
batch); the outcome reward stays GRPO's weighted sum."""

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification
from trl import GRPOConfig
from trl.rewards import get_soft_overlong_punishment

from prime_trl import PRIMEConfig, PRIMETrainer
from prime_trl.config import prime_config_from_grpo
from prime_trl.label_rule import resolve_label_rule
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

NAN = float("nan")


def format_reward(completions, **kwargs) -> list[float]:
    """A [0, 1] shaping term that is not correctness: 1 when the completion has a space."""
    return [float(" " in c[0]["content"]) for c in completions]


def signed_reward(completions, **kwargs) -> list[float]:
    """Correctness scored +-1 (parity: +1 right, -1 wrong)."""
    return [2.0 * r - 1.0 for r in parity_reward(completions)]


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model_dir, tmp_path_factory):
    """A tiny sequence-classification reward model (random score head on the tiny Qwen2), saved with its tokenizer."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    out = str(tmp_path_factory.mktemp("tiny-reward-model"))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def _logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def _train(model_dir, args, reward_funcs):
    trainer = PRIMETrainer(model=model_dir, reward_funcs=reward_funcs, args=args, train_dataset=toy_dataset())
    trainer.train()
    losses = _logged(trainer, "loss")
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
    labels = _logged(trainer, "prm/label_mean")
    assert len(labels) == 2 and all(0.0 <= x <= 1.0 for x in labels), labels
    return trainer


# -- each GRPO setup of the table trains two steps -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("weights", [None, [1.0, 0.5]], ids=["default_weights", "weights_1_0.5"])
def test_accuracy_plus_format_labels_with_accuracy(tiny_model_dir, tmp_path, weights):
    args = cpu_config(tmp_path, reward_weights=weights)
    trainer = _train(tiny_model_dir, args, [parity_reward, format_reward])
    # default rule: the first reward function, as is; so the label mean is the accuracy mean of each step
    assert _logged(trainer, "prm/label_mean") == pytest.approx(_logged(trainer, "rewards/parity_reward/mean"))


@pytest.mark.slow
def test_signed_reward_with_the_signed_transform(tiny_model_dir, tmp_path):
    trainer = _train(tiny_model_dir, cpu_config(tmp_path, prm_label_transform="signed"), [signed_reward])
    signed = _logged(trainer, "rewards/signed_reward/mean")
    assert min(signed) < 1  # scores are +-1, so some row scored -1: the outcome really left [0, 1]
    assert _logged(trainer, "prm/label_mean") == pytest.approx([(r + 1) / 2 for r in signed])


@pytest.mark.slow
def test_overlong_penalty_beside_accuracy(tiny_model_dir, tmp_path):
    # max_completion_length 12, penalty from 4 tokens on: most random completions are punished
    penalty = get_soft_overlong_punishment(max_completion_len=12, soft_punish_cache=8)
    trainer = _train(tiny_model_dir, cpu_config(tmp_path), [parity_reward, penalty])
    assert min(_logged(trainer, "rewards/soft_overlong_punishment_reward/mean")) < 0
    assert _logged(trainer, "prm/label_mean") == pytest.approx(_logged(trainer, "rewards/parity_reward/mean"))


@pytest.mark.slow
@pytest.mark.parametrize("form", ["path", "instance"])
def test_reward_model_labels_through_the_sigmoid(tiny_model_dir, reward_model_dir, tmp_path, form):
    reward_model = reward_model_dir if form == "path" else AutoModelForSequenceClassification.from_pretrained(
        reward_model_dir, num_labels=1
    )
    args = cpu_config(tmp_path)
    trainer = _train(tiny_model_dir, args, reward_model)
    assert trainer.prm_label_rule.transforms == ("sigmoid",)
    # GRPO keeps the last generation batch's rewards for its completions table: the last label mean is sigma's mean
    scores = torch.tensor(list(trainer._logs["rewards"][trainer.reward_func_names[0]]))
    assert len(scores) == args.generation_batch_size and not ((scores >= 0) & (scores <= 1)).all()
    assert _logged(trainer, "prm/label_mean")[-1] == pytest.approx(torch.sigmoid(scores).mean().item(), rel=1e-5)


@pytest.mark.slow
def test_grpo_config_trains_with_its_own_values(tiny_model_dir, tmp_path):
    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, per_device_train_batch_size=8,
                      max_completion_length=12, max_steps=2, learning_rate=1e-2, report_to="none",
                      save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True, loss_type="bnpo", epsilon=0.3)
    trainer = _train(tiny_model_dir, args, [parity_reward])
    assert isinstance(trainer.args, PRIMEConfig)
    assert (trainer.args.loss_type, trainer.args.epsilon, trainer.args.num_generations) == ("bnpo", 0.3, 8)


# -- fast checks: the conversion, the rule, its errors ---------------------------------------------------------
def test_grpo_config_conversion_keeps_every_value(tmp_path, caplog):
    grpo = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", loss_type="grpo",
                      beta=0.04, epsilon=0.3, num_generations=8, per_device_train_batch_size=8,
                      generation_batch_size=16, scale_rewards=False, eval_strategy="steps", eval_steps=1,
                      save_strategy="steps", save_steps=1, load_best_model_at_end=True, metric_for_best_model="reward")
    with caplog.at_level("WARNING", logger="prime_trl.config"):
        prime = prime_config_from_grpo(grpo)
    assert type(prime) is PRIMEConfig
    prime_values = prime.to_dict()
    assert {k: v for k, v in grpo.to_dict().items() if prime_values[k] != v} == {}  # nothing of GRPO's changed
    assert prime.prm_beta == PRIMEConfig.prm_beta and prime.prm_label_funcs is None  # PRIME's own: defaults
    assert [r.getMessage() for r in caplog.records if "GRPOConfig" in r.getMessage()] != []


def test_label_rule_hand_computed():
    names = ["acc", "fmt", "rm"]
    reward_model = torch.nn.Linear(1, 1)  # any nn.Module is a reward model to GRPO
    weights = torch.tensor([2.0, 1.0, 1.0])
    rule = resolve_label_rule(["acc", 2], "auto", [parity_reward, format_reward, reward_model], names, weights)
    assert rule.funcs == (0, 2) and rule.transforms == ("identity", "sigmoid")
    rewards = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, NAN], [NAN, 1.0, NAN]])
    # row 0: (2*1 + 1*sigma(0)) / 3 = 2.5/3; row 1: rm None -> 2*0/2 = 0; row 2: no label function scored -> NaN
    labels = rule(rewards, weights)
    torch.testing.assert_close(labels[:2], torch.tensor([2.5 / 3, 0.0]))
    assert math.isnan(labels[2])


def test_label_rule_errors_name_the_functions():
    names, funcs, weights = ["acc", "fmt"], [parity_reward, format_reward], torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match=r"'nope' is neither the name nor the index.*\['acc', 'fmt'\]"):
        resolve_label_rule(["nope"], "auto", funcs, names, weights)
    with pytest.raises(ValueError, match=r"'fmt' has reward weight 0.*positive weight"):
        resolve_label_rule(["fmt"], "auto", funcs, names, weights)
    rule = resolve_label_rule(None, "identity", funcs, names, weights)
    with pytest.raises(ValueError, match=r"'acc' scored 1.5 at row 1, outside \[0, 1\].*'signed'"):
        rule(torch.tensor([[1.0, 0.0], [1.5, 0.0]]), weights)


# -- the trainer's labels, filter and outcome on a hand-made batch ---------------------------------------------
def penalty_reward(completions, **kwargs) -> list[float]:
    return [0.0] * len(completions)  # never called: the hand-made batch brings its own rewards


def _hand_made_batch(num_rows, prompt_len=5, completion_len=6):
    g = torch.Generator().manual_seed(0)
    completion_mask = (torch.arange(completion_len) < torch.randint(2, completion_len + 1, (num_rows, 1), generator=g))
    return {
        "prompt_ids": torch.randint(3, 300, (num_rows, prompt_len), generator=g),
        "prompt_mask": torch.ones(num_rows, prompt_len, dtype=torch.long),
        "completion_ids": torch.randint(3, 300, (num_rows, completion_len), generator=g) * completion_mask,
        "completion_mask": completion_mask.long(),
    }


def test_trainer_feeds_labels_to_prm_and_filter_and_outcome_to_advantages(tiny_model_dir, tmp_path):
    args = cpu_config(tmp_path, per_device_train_batch_size=12, reward_weights=[1.0, 0.5, 1.0],
                      prm_label_funcs=["parity_reward", "format_reward"])
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=[parity_reward, format_reward, penalty_reward],
                           args=args, train_dataset=toy_dataset())
    seen = {}
    step, token_advantages = trainer.prm.step, trainer._token_advantages

    def spy_step(mode, batch, ref_logps, labels):
        seen["prm_labels"] = labels.clone()
        return step(mode, batch, ref_logps, labels)

    def spy_advantages(process_rewards, scores, mask, batch=None):
        seen["outcome"] = scores.clone()
        return token_advantages(process_rewards, scores, mask, batch)

    trainer.prm.step, trainer._token_advantages = spy_step, spy_advantages
    # columns: accuracy, format, penalty; weights 1, 0.5, 1; label = (1*acc + 0.5*fmt) / (weights present)
    rewards = torch.tensor([
        [1, 1, 0], [0, 1, -1], [0, 0, -0.5], [1, 0, 0],      # labels 1, 1/3, 0, 2/3: mean 0.5, kept
        [NAN, 1, 0], [1, 1, 0], [1, NAN, -1], [1, 1, 0],    # labels 1, 1, 1, 1: mean 1 > 0.8, dropped
        [1, 1, 0], [NAN, NAN, -1], [0, 0, 0], [0, 1, 0],    # row 9 has no label: group dropped
    ])  # fmt: skip
    trainer.model.train()
    output = trainer._apply_prime(_hand_made_batch(12), rewards)

    torch.testing.assert_close(seen["prm_labels"], torch.tensor([1.0, 1 / 3, 0.0, 2 / 3]))  # group 0 only
    # outcome = weighted sum of all three: 1.5, -0.5, -0.5, 1 | 0.5, 1.5, 0, 1.5 | 1.5, -1, 0, 0.5
    expected_outcome = torch.tensor([1.5, -0.5, -0.5, 1, 0.5, 1.5, 0, 1.5, 1.5, -1, 0, 0.5])
    torch.testing.assert_close(seen["outcome"], expected_outcome)
    assert output["tool_mask"][4:].sum() == 0 and output["tool_mask"][:4].sum() > 0
    # 11 labels: (1 + 1/3 + 0 + 2/3) + 4 + (1 + 0 + 1/3) = 22/3, mean 2/3
    assert trainer._metrics["train"]["prm/label_mean"][-1] == pytest.approx(2 / 3)
    assert trainer._metrics["train"]["filter/kept_fraction"][-1] == pytest.approx(1 / 3)
