"""Per-token log-probabilities from an fp32 LM head, with the transformer body in whatever precision it runs.

The implicit reward r_t = beta * (log pi_prm - log pi_ref) is the difference of two nearly equal log-probs. From
bf16 logits, log-probs between -8 and -4 are rounded to steps of 2^-5, while one PRM step at lr 1e-6 moves them
by ~1e-4: the difference comes out exactly 0 on most tokens and a rounding jump on the rest. So the body (the
costly part) keeps running under the caller's autocast, and only the head, hidden (M, H) @ W (V, H)^T, runs in
fp32.

How: for one forward, the model's output-embedding module computes the log-probs of the given labels instead of
logits. The forward still goes through every wrapper (DDP, DeepSpeed, PEFT), so their hooks run (DDP's gradient
sync) and gradients flow from the fp32 head into the bf16 body, LoRA adapters and a trainable (possibly tied) head
weight. The head runs over a few rows at a time, each chunk recomputed in the backward (activation checkpointing),
so the fp32 (M, V) logits never exist whole. Plain torch on purpose: TRL's tiled kernel gathers the head under
DeepSpeed ZeRO-3 in its backward and fails on the PRM, which stays whole (never partitioned) there.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils.checkpoint import checkpoint

# fp32 logits held at once, rows x V: 2^23 floats = 32 MiB (55 rows at Qwen2's vocabulary of 151,936)
LOGITS_PER_CHUNK = 2**23
# Config fields by which some families transform the logits after the head (Gemma2 soft-capping, Cohere, Granite,
# MiniCPM, Falcon-H1 scaling). Qwen2 and Llama set none of them; the head here reproduces none.
LOGIT_TRANSFORMS = (
    "final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling",
)


def _chunk_logps(hidden, weight, bias, labels):
    # log pi(y) = z_y - logsumexp_v z_v,   z = h W^T + b   (fp32)
    logits = torch.nn.functional.linear(hidden.float(), weight, bias)  # (n, V)
    return logits.gather(-1, labels[:, None]).squeeze(-1) - logits.logsumexp(-1)  # (n,)


def fp32_head_logps(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
    rows_per_chunk: int | None = None,
) -> torch.Tensor:
    """log softmax(hidden @ weight^T + bias)[labels], every product and sum in fp32, autocast off.

    hidden: (..., H) any float dtype; weight: (V, H); bias: (V,) or None; labels: (...) token ids.
    Returns (...) fp32, differentiable in hidden, weight and bias.

    Memory: the fp32 logits of `rows_per_chunk` rows at a time (default: LOGITS_PER_CHUNK / V rows, 32 MiB) and
    a few temporaries of that size (log-sum-exp; in the backward, the recomputed chunk and its gradient); never the
    (M, V) logits, M = numel(labels). A head weight not in fp32 (a bf16-loaded model) adds one fp32 copy of it,
    V x H x 4 bytes, held while the head runs (and until the backward, if anything needs gradients).
    """
    shape = labels.shape
    hidden, labels = hidden.reshape(-1, hidden.size(-1)), labels.reshape(-1)  # (M, H), (M,)
    rows = rows_per_chunk or max(1, LOGITS_PER_CHUNK // weight.size(0))
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    with torch.autocast(hidden.device.type, enabled=False):
        weight, bias = weight.float(), None if bias is None else bias.float()  # no copy when already fp32
        chunks = [
            checkpoint(_chunk_logps, h, weight, bias, y, use_reentrant=False) if needs_grad
            else _chunk_logps(h, weight, bias, y)
            for h, y in zip(hidden.split(rows), labels.split(rows))
        ]
    return torch.cat(chunks).view(shape)


def output_head(model: torch.nn.Module) -> torch.nn.Module:
    """The LM head of a causal LM, under any DDP / DeepSpeed / PEFT wrapping; refuses heads this module cannot
    reproduce in fp32 (logit transforms, a LoRA-wrapped head)."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):  # DDP, DeepSpeed engines
        model = model.module
    if hasattr(model, "get_base_model"):  # PeftModel: the head of the wrapped transformers model
        model = model.get_base_model()
    config = model.config.get_text_config()
    for field in LOGIT_TRANSFORMS:
        if getattr(config, field, None) not in (None, 1.0):
            raise ValueError(
                f"{type(model).__name__} transforms its logits ({field}={getattr(config, field)}), which the fp32 "
                "log-prob head does not reproduce; supported are heads whose logits are hidden @ W^T (+ b), as in "
                "Qwen2 and Llama"
            )
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or hasattr(head, "base_layer"):
        raise ValueError(
            f"the LM head is a {type(head).__name__}, not a plain Linear (a LoRA on lm_head?): the fp32 log-prob head "
            "needs its weight; leave lm_head out of the adapter's target_modules"
        )
    return head


@contextmanager
def head_returns_logps(head: torch.nn.Linear, labels: torch.Tensor, rows_per_chunk: int | None = None):
    """Within the block, `head(hidden (N, T+1, H))` returns the fp32 log-probs (N, T) of `labels` (N, T) instead of
    logits: position i scores token i+1, so the last position, which predicts past the labels, is dropped.

    Overrides the instance's `forward` (not `__call__`), so hooks on the head still run.
    """
    previous = head.__dict__.get("forward")  # an instance-level forward someone else set, restored after

    def forward(hidden):  # (N, T+1, H) -> (N, T)
        return fp32_head_logps(hidden[:, :-1], head.weight, head.bias, labels.to(hidden.device), rows_per_chunk)

    head.forward = forward
    try:
        yield
    finally:
        if previous is None:
            del head.forward
        else:
            head.forward = previous


def completion_token_logps(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_completion: int,
    rows_per_chunk: int | None = None,
) -> torch.Tensor:
    """log pi(y_t | y_<t) of the last `num_completion` tokens of each row, from an fp32 head, at temperature 1.

    input_ids, attention_mask: (N, L). Returns (N, T) fp32, T = num_completion. The body runs under whatever
    autocast the caller set; see `fp32_head_logps` for the head's memory.
    """
    # the hidden state at position i predicts token i+1: the T completion tokens need the T positions before them,
    # so the head gets the last T+1 positions (logits_to_keep) and drops the last
    labels = input_ids[:, -num_completion:]  # (N, T)
    with head_returns_logps(output_head(model), labels, rows_per_chunk):
        return model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=num_completion + 1, use_cache=False
        ).logits  # (N, T): the head's output, log-probs here
