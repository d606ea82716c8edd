"""The loss that trains the policy, GRPO's `loss_type="dapo"` (`GRPOTrainer._compute_loss`), equals
`prime_trl.core.ppo_clip_loss` on the same batch: value and gradient.

`ppo_clip_loss` is the reference formula of PRIME's policy update (paper Eq. 6); the trainer itself never calls
it and uses TRL's loss. These tests recompute the log-probs with a plain forward pass (full logits,
log_softmax, gather) and feed them to `ppo_clip_loss`, so a change in TRL's loss, its normaliser or the mask it
uses would show up here.
"""

import pytest
import torch

from prime_trl import PRIMETrainer
from prime_trl.core import ppo_clip_loss
from tests.trainer.helpers import cpu_config, half_solvable_reward, toy_dataset


def _plain_logps(model, inputs):
    """log pi_theta(y_t | y_<t) of the completion tokens, (B, T), with the gradient."""
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)  # (B, Lp + T)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    T = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, Lp + T, V)
    logps = logits[:, -T - 1:-1].float().log_softmax(-1)  # (B, T, V)
    return logps.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)  # (B, T)


def _loss_mask(inputs):
    """The tokens GRPO's loss counts: completion tokens of the rows PRIME keeps (`tool_mask`)."""
    mask = inputs["completion_mask"]
    return mask * inputs["tool_mask"] if "tool_mask" in inputs else mask


def _oracle(model, inputs, epsilon_low, epsilon_high):
    logps = _plain_logps(model, inputs)
    old = inputs.get("old_per_token_logps")
    old = logps.detach() if old is None else old
    advantages = inputs["advantages"]
    advantages = advantages.unsqueeze(1).expand_as(logps) if advantages.dim() == 1 else advantages
    return ppo_clip_loss(logps, old, advantages, _loss_mask(inputs), epsilon_low, epsilon_high)


def _batch(trainer, completions_per_prompt, seed=0):
    """Left-padded prompts and right-padded completions of different lengths, with (B, T) advantages."""
    tokenizer = trainer.processing_class
    g = torch.Generator().manual_seed(seed)
    prompts = [tokenizer(f"What is {i} + {i}?", add_special_tokens=False)["input_ids"] for i in range(2)]
    rows = [(p, torch.randint(3, 200, (int(n),), generator=g).tolist())
            for p in prompts for n in torch.randint(2, 9, (completions_per_prompt,), generator=g)]
    Lp, T = max(len(p) for p, _ in rows), max(len(c) for _, c in rows)
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (Lp - len(p)) + p for p, _ in rows])
    prompt_mask = torch.tensor([[0] * (Lp - len(p)) + [1] * len(p) for p, _ in rows])
    completion_ids = torch.tensor([c + [pad] * (T - len(c)) for _, c in rows])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (T - len(c)) for _, c in rows])
    B = len(rows)
    keep = torch.ones(B, dtype=torch.long)
    keep[1] = 0  # a row PRIME filtered out: its tokens must not count
    tool_mask = completion_mask * keep.unsqueeze(1)
    return {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "completion_ids": completion_ids, "completion_mask": completion_mask, "tool_mask": tool_mask,
        "advantages": torch.randn(B, T, generator=g) * completion_mask,
        "num_items_in_batch": tool_mask.sum(),
    }


@pytest.mark.parametrize("epsilon_high", [None, 0.28])
def test_dapo_loss_equals_ppo_clip_loss_with_clipping(tiny_model_dir, tmp_path, epsilon_high):
    args = cpu_config(tmp_path, **({"epsilon_high": epsilon_high} if epsilon_high else {}))
    trainer = PRIMETrainer(model=tiny_model_dir, reward_funcs=half_solvable_reward, args=args,
                           train_dataset=toy_dataset())
    assert trainer.loss_type == "dapo"
    model = trainer.model.eval()  # eval: GRPO's normaliser is then num_items_in_batch, with no accumulation factor
    inputs = _batch(trainer, completions_per_prompt=3)
    with torch.no_grad():
        logps = _plain_logps(model, inputs)
    # old log-probs off by up to +-0.6 nats: ratios on both sides of the clip range, so both branches are taken
    g = torch.Generator().manual_seed(1)
    inputs["old_per_token_logps"] = logps + (torch.rand(logps.shape, generator=g) - 0.5) * 1.2

    eps_low, eps_high = args.epsilon, epsilon_high or args.epsilon
    expected, metrics = _oracle(model, inputs, eps_low, eps_high)
    assert 0.1 < metrics["clip_fraction"] < 0.9, "the batch should clip some tokens and not others"
    expected_grads = torch.autograd.grad(expected, [p for p in model.parameters() if p.requires_grad])

    loss = trainer._compute_loss(model, inputs)
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)


class LossCapturingTrainer(PRIMETrainer):
    """Records, for each micro-batch TRL's loss sees during training, its inputs and the loss it returned."""

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        if not hasattr(self, "micro_batches"):
            self.micro_batches = []
        with torch.no_grad():
            oracle_inputs = {k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()}
            expected, metrics = _oracle(model, oracle_inputs, self.epsilon_low, self.epsilon_high)
        self.micro_batches.append((loss.detach(), expected, _loss_mask(inputs).sum(), metrics["approx_kl"]))
        return loss


@pytest.mark.slow
def test_dapo_loss_in_training_is_the_token_mean_ppo_clip_loss_of_the_generation_batch(tiny_model_dir, tmp_path):
    # two micro-batches per optimizer step, and each generation batch used twice (num_iterations=2), so the
    # second pass runs with pi_theta != pi_old
    args = cpu_config(tmp_path, max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                      num_iterations=2, learning_rate=5e-2)
    trainer = LossCapturingTrainer(model=tiny_model_dir, reward_funcs=half_solvable_reward, args=args,
                                   train_dataset=toy_dataset())
    trainer.train()
    steps = [trainer.micro_batches[i:i + 2] for i in range(0, len(trainer.micro_batches), 2)]
    assert len(steps) == 4
    for step in steps:
        # GRPO divides each micro-batch's token sum by the generation batch's token count, so the losses of one
        # optimizer step add up to the token mean over that batch: ppo_clip_loss's mean, weighted by tokens
        total = sum(n for _, _, n, _ in step)
        expected = sum(e * n for _, e, n, _ in step) / total.clamp(min=1)
        torch.testing.assert_close(sum(loss for loss, _, _, _ in step), expected, atol=1e-5, rtol=1e-4)
    # the reused batches really were off-policy: the ratio was not 1 everywhere
    assert max(kl for step in steps[1::2] for _, _, _, kl in step) > 1e-6
