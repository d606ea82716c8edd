"""PRM health on a fixed pool: pool files, tokenization into steps, the metrics, and the training callback."""

import json

import pytest
import torch

from prime_trl.prm_health import (
    PRMHealthCallback,
    RolloutPool,
    load_rollout_pool,
    prm_health,
    sample_rollout_pool,
    tokenize_pool,
)
from prime_trl.tiny import build_tokenizer

# two prompts x two rollouts; one step per line ("\n" closes a step)
POOL = RolloutPool(
    prompts=["p0", "p1"],
    completions=[["1 + 1 = 2\nso 2", "1 + 1 = 3\nso 2"], ["2 + 2 = 4\nso 4", "2 + 2 = 4\nso 3"]],
    scores=[[1.0, 0.0], [1.0, 0.0]],
    first_wrong_steps=[[None, 0], [None, 1]],
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(individual_digits=True)


def reward_minus_one_on(tokenizer, digit: str):
    """A stand-in PRM: r_t = -1 on every completion token that is `digit`, 0 elsewhere."""
    (digit_id,) = tokenizer(digit, add_special_tokens=False)["input_ids"]

    def token_rewards(batch):
        T = batch.completion_mask.shape[1]
        return -(batch.input_ids[:, -T:] == digit_id).float() * batch.completion_mask

    return token_rewards


def test_pool_round_trips_through_a_file(tmp_path):
    path = tmp_path / "pool.jsonl"
    POOL.save(str(path))
    assert load_rollout_pool(str(path)) == POOL


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "empty"),
        ([{"prompt": "p", "scores": [1.0]}], "record 0: field 'completions' is missing"),
        ([{"prompt": "p", "completions": ["a"], "scores": [1.0]},
          {"prompt": "q", "completions": ["a", "b"], "scores": [1.0, 0.0]}], "record 1: every record"),
        ([{"prompt": "p", "completions": ["a"], "scores": [1.0], "first_wrong_steps": []}],
         "record 0: field 'first_wrong_steps'"),
    ],
)  # fmt: skip
def test_bad_pool_records_name_the_record_and_field(records, message):
    with pytest.raises(ValueError, match=message):
        RolloutPool.from_records(records)


def test_tokenize_pool_assigns_steps_and_eos(tokenizer):
    pool = tokenize_pool(POOL, tokenizer, step_separators=("\n",))
    first = pool.completion_ids[0]
    assert first[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(first[:-1]) == "1 + 1 = 2\nso 2"
    steps = pool.step_ids[0]
    assert steps[0] == 0 and steps[-1] == 1 and sorted(set(steps)) == [0, 1]  # EOS joins the last step
    assert pool.scores.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert pool.first_wrong_steps.tolist() == [-1, 0, -1, 1]


def test_prm_health_hand_computed(tokenizer):
    """r = -1 on each "3": the wrong rollouts hold one "3" each, the right ones none.

    prompt 0: S = (0, -1) -> right above wrong; prompt 1: S = (0, -1) -> right above wrong: accuracy 1.
    Wrong rollout 1 ("1 + 1 = 3" / "so 2"): step rewards (-1, 0), first wrong step 0 -> lowest: hit 1.
    Wrong rollout 3 ("2 + 2 = 4" / "so 3"): step rewards (0, -1), first wrong step 1 -> hit 1. Chance 1/2.
    Sequence rewards (0, -1, 0, -1) and equal lengths (every rollout has 8 tokens + EOS): r = 0.
    """
    pool = tokenize_pool(POOL, tokenizer, step_separators=("\n",))
    assert len({len(ids) for ids in pool.completion_ids}) == 1
    health = prm_health(reward_minus_one_on(tokenizer, "3"), pool, tokenizer.pad_token_id, batch_size=3)
    assert health["heldout_pairwise_accuracy"] == 1.0
    assert health["heldout_pairwise_accuracy_mean"] == 1.0
    assert health["heldout_length_correlation"] == 0.0
    assert health["heldout_error_localisation"] == 1.0
    assert health["heldout_error_localisation_chance"] == 0.5
    assert health["heldout_mixed_groups"] == 2


def test_only_groups_with_both_outcomes_count_and_rank(tokenizer):
    """Prompt 1's rollouts both right: no pair there. Prompt 0 alone: S = (0, -1), right above wrong."""
    pool = RolloutPool(POOL.prompts, POOL.completions, [[1.0, 0.0], [1.0, 1.0]], POOL.first_wrong_steps)
    health = prm_health(reward_minus_one_on(tokenizer, "3"), tokenize_pool(pool, tokenizer), tokenizer.pad_token_id)
    assert health["heldout_mixed_groups"] == 1
    assert health["heldout_pairwise_accuracy"] == 1.0


def test_prm_health_of_a_reversed_prm_and_of_length_drift(tokenizer):
    """r = -1 on each "2": the right rollouts now score lower; and a reward that counts tokens tracks length."""
    pool = tokenize_pool(POOL, tokenizer, step_separators=("\n",))
    health = prm_health(reward_minus_one_on(tokenizer, "2"), pool, tokenizer.pad_token_id)
    # prompt 0: S = (-2, -1): wrong above right, 0; prompt 1: S = (-2, -2): a tie, 1/2 -> mean 0.25
    assert health["heldout_pairwise_accuracy"] == 0.25
    # wrong rollout 1: step rewards (0, -1), first wrong 0: miss; rollout 3: (-2, 0), first wrong 1: miss
    assert health["heldout_error_localisation"] == 0.0

    drifting = RolloutPool(["p"], [["1", "1 1", "1 1 1", "1 1 1 1"]], [[1.0, 0.0, 1.0, 0.0]])
    pool = tokenize_pool(drifting, tokenizer)
    health = prm_health(lambda batch: -batch.completion_mask.float(), pool, tokenizer.pad_token_id)
    assert health["heldout_length_correlation"] == pytest.approx(-1.0)
    # every token reward is -1, so the mean ties every pair: exactly chance
    assert health["heldout_pairwise_accuracy_mean"] == 0.5
    assert torch.isnan(torch.tensor(health["heldout_error_localisation"]))  # no first wrong step known


def test_sample_rollout_pool_shapes_scores_and_first_wrong_steps(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "ground_truth": str(i + 1),
             "ability": "math"} for i in range(3)]  # fmt: skip
    pool = sample_rollout_pool(model, tokenizer, rows, num_generations=2, max_new_tokens=6,
                               first_wrong_step=lambda row, completion: len(completion) % 2)  # fmt: skip
    assert len(pool.completions) == 3 and pool.num_generations == 2
    assert all(s in (0.0, 1.0) for group in pool.scores for s in group)
    assert pool.first_wrong_steps == [[len(c) % 2 for c in group] for group in pool.completions]


@pytest.mark.slow
def test_callback_logs_heldout_health_at_the_right_steps(tmp_path, tiny_model_dir):
    """Step 0: the PRM is its reference, every r_t = 0: accuracy exactly 0.5, no drift, localisation = chance.
    Later measurements join the log entries of steps 2 and 3 (every 2 steps, and the last one)."""
    from prime_trl import PRIMETrainer
    from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

    args = cpu_config(tmp_path, max_steps=3, num_generations=4, prm_learning_rate=1e-1)
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=[parity_reward], args=args,
                           train_dataset=toy_dataset())  # fmt: skip
    pool = RolloutPool(["What is 1 + 1?", "What is 2 + 2?"],
                       [["2\n\n2", "3", "1 1\n\n1", "4"], ["4", "5 5", "4\n\n4\n\n4", "44"]],
                       [[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]],
                       [[None, 0, 1, None], [None, 0, None, 0]])  # fmt: skip
    callback = PRMHealthCallback.attach(trainer, pool, every_n_steps=2)
    assert trainer.callback_handler.callbacks[0] is callback
    trainer.train()

    assert [h["step"] for h in callback.history] == [0, 2, 3]
    start = callback.history[0]
    assert start["prm/heldout_pairwise_accuracy"] == 0.5
    assert start["prm/heldout_length_correlation"] == 0.0
    assert start["prm/heldout_error_localisation"] == start["prm/heldout_error_localisation_chance"]
    logged = {e["step"]: e for e in trainer.state.log_history if "prm/heldout_pairwise_accuracy" in e}
    assert sorted(logged) == [2, 3]
    assert logged[3]["prm/heldout_pairwise_accuracy"] == callback.history[2]["prm/heldout_pairwise_accuracy"]
    assert "loss" in logged[2]  # merged into the step's own entry, not a separate one
    # the PRM learned (lr 0.1): its rewards on the pool are no longer all zero, so the length correlation moved
    assert callback.history[-1]["prm/heldout_length_correlation"] != 0.0
    json.dumps(callback.history)  # plain floats, ready for eval.json


def test_pairwise_accuracy_averages_over_informative_prompts_only(tokenizer):
    """A third prompt whose rollouts are all right holds no pair: it must not pull the accuracy towards 1/2."""
    pool = RolloutPool(POOL.prompts + ["p2"], POOL.completions + [["3", "3 3"]], POOL.scores + [[1.0, 1.0]])
    health = prm_health(reward_minus_one_on(tokenizer, "3"), tokenize_pool(pool, tokenizer), tokenizer.pad_token_id)
    assert health["heldout_pairwise_accuracy"] == 1.0  # as without the third prompt


def _even_length_verify(rows, completions):
    """Stands in for the verifiers on a random tiny model: right when the completion's length is even, so
    groups hold both outcomes."""
    return [[float(len(c) % 2 == 0) for c in group] for group in completions]


HELDOUT_ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "ground_truth": str(i + 1),
                 "ability": "math"} for i in range(6)]  # fmt: skip


def _trained_weights(trainer) -> torch.Tensor:
    trainer.train()
    return torch.cat([p.detach().flatten() for p in [*trainer.model.parameters(), *trainer.prm.parameters]])


@pytest.mark.slow
def test_on_policy_callback_scores_fresh_rollouts_of_the_current_policy_and_leaves_training_alone(
    tmp_path, tiny_model_dir, monkeypatch
):
    import prime_trl.evaluation
    from prime_trl import PRIMETrainer
    from prime_trl.prm_health import OnPolicyPRMHealthCallback, health_of_rewards, pool_token_rewards
    from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

    monkeypatch.setattr(prime_trl.evaluation, "verify", _even_length_verify)

    def trainer(name):
        args = cpu_config(tmp_path / name, max_steps=2, num_generations=4, prm_learning_rate=1e-1)
        return PRIMETrainer(model=tiny_model_dir, reward_funcs=[parity_reward], args=args, train_dataset=toy_dataset())

    plain = _trained_weights(trainer("plain"))
    watched = trainer("watched")
    callback = OnPolicyPRMHealthCallback.attach(watched, HELDOUT_ROWS, num_generations=4, every_n_steps=1, seed=3)
    assert torch.equal(_trained_weights(watched), plain)  # sampling ran under a forked RNG

    assert [h["step"] for h in callback.history] == [0, 1, 2]
    assert callback.history[0]["prm/onpolicy_pairwise_accuracy"] == 0.5  # PRM = reference: every r_t is 0
    # the last measurement is health_of_rewards of the trained PRM's r_t and of log pi_ref, on the rollouts the
    # trained policy samples with seed + step at the trainer's temperature and completion length (the defaults)
    pool = sample_rollout_pool(watched.model, watched.processing_class, HELDOUT_ROWS, 4,
                               watched.args.max_completion_length, watched.args.temperature, seed=3 + 2)
    assert pool.completions == callback.sample_pool(2).completions
    tokenized = tokenize_pool(pool, watched.processing_class)
    pad = watched.processing_class.pad_token_id
    prm = health_of_rewards(pool_token_rewards(callback.token_rewards, tokenized, pad), tokenized)
    ref = health_of_rewards(pool_token_rewards(callback.reference_logps, tokenized, pad), tokenized)
    last = callback.history[-1]
    assert any(len(set(g)) > 1 for g in pool.scores) and ref["heldout_pairwise_accuracy"] != 0.5  # pairs to rank
    assert watched.model.training  # measuring put the policy back in train mode
    assert last["prm/onpolicy_pairwise_accuracy"] == pytest.approx(prm["heldout_pairwise_accuracy"])
    assert last["prm/onpolicy_length_correlation"] == pytest.approx(prm["heldout_length_correlation"])
    assert last["prm/onpolicy_reference_pairwise_accuracy"] == pytest.approx(ref["heldout_pairwise_accuracy"])
    mixed = sum(len(set(group)) > 1 for group in pool.scores)  # the prompts whose rollouts hold both outcomes
    assert last["prm/onpolicy_mixed_groups"] == mixed >= 1


def test_on_policy_callback_refuses_a_sharded_policy_and_single_rollouts_by_name():
    import types

    from prime_trl.prm_health import OnPolicyPRMHealthCallback

    accelerator = types.SimpleNamespace(distributed_type=types.SimpleNamespace(name="FSDP"),
                                        state=types.SimpleNamespace(deepspeed_plugin=None))  # fmt: skip
    with pytest.raises(ValueError, match="FSDP shards"):
        OnPolicyPRMHealthCallback(types.SimpleNamespace(accelerator=accelerator), HELDOUT_ROWS)
    accelerator.distributed_type.name = "NO"
    with pytest.raises(ValueError, match="num_generations must be >= 2"):
        OnPolicyPRMHealthCallback(types.SimpleNamespace(accelerator=accelerator), HELDOUT_ROWS, num_generations=1)


@pytest.mark.slow
def test_fixed_pool_callback_scores_against_the_policy_reference(tmp_path, tiny_model_dir):
    """prm_ref_type='policy' holds no reference model: the pool is scored against the policy, as in training."""
    from prime_trl import PRIMETrainer
    from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

    args = cpu_config(tmp_path, max_steps=1, num_generations=4, prm_ref_type="policy")
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=[parity_reward], args=args, train_dataset=toy_dataset())
    callback = PRMHealthCallback(trainer, POOL, step_separators=("\n",))
    assert callback.measure(0)["prm/heldout_pairwise_accuracy"] == 0.5  # PRM = policy at the start: r_t = 0
