"""Per-token log-probabilities from an fp32 LM head, with the transformer body in whatever precision it runs.

The implicit reward r_t = beta * (log pi_prm - log pi_ref) is the difference of two nearly equal log-probs. From
bf16 logits, log-probs between -8 and -4 are rounded to steps of 2^-5, while one PRM step at lr 1e-6 moves them by ~1e-4:
the difference comes out exactly 0 on most tokens and a rounding jump on the rest. So the body (the costly part)
keeps running under the caller's autocast, and only the head, hidden (M, H) @ W (V, H)^T, runs in fp32.

How: for one forward, the model's output-embedding module computes the log-probs of the given labels instead of
logits. The forward still goes through every wrapper (DDP, DeepSpeed, PEFT), so their hooks run (DDP's gradient
sync, ZeRO-3's parameter gather) and gradients flow from the fp32 head into the bf16 body, LoRA adapters and a
trainable (possibly tied) head weight. TRL's `ChunkedLogProbFunction` (the kernel behind GRPO's fused head) does the
fp32 projection in tiles and recomputes them in the backward, so the (M, V) logits never exist.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from trl.kernels import ChunkedLogProbFunction

# Vocabulary columns per fp32 tile (TRL's GRPO head uses 32768): a quarter of that bounds a tile at 128 MiB, and
# on devices without Triton the backward's few tile-sized temporaries with it. The kernel takes 4096 rows a tile.
VOCAB_CHUNK_SIZE = 8192
# Config fields by which some families transform the logits after the head (Gemma2 soft-capping, Cohere, Granite,
# MiniCPM, Falcon-H1 scaling). Qwen2 and Llama set none of them; the head here reproduces none.
LOGIT_TRANSFORMS = (
    "final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling",
)


def fp32_head_logps(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
    vocab_chunk_size: int = VOCAB_CHUNK_SIZE,
) -> torch.Tensor:
    """log softmax(hidden @ weight^T + bias)[labels], every product and sum in fp32, autocast off.

    hidden: (..., H) any float dtype; weight: (V, H); bias: (V,) or None; labels: (...) token ids.
    Returns (...) fp32, differentiable in hidden, weight and bias.

    Memory: one fp32 tile of min(M, 4096) x min(V, vocab_chunk_size) logits (at most 128 MiB at the default chunk,
    2.5 MiB for 80 tokens; without Triton the backward adds a few temporaries of that size) plus an fp32 copy of
    the hidden states (M, H), M = numel(labels); never the (M, V) logits. The weight is upcast one vocabulary chunk
    at a time, never whole; a trainable weight gets an fp32 (V, H) gradient buffer in the backward.
    """
    shape = labels.shape
    with torch.autocast(hidden.device.type, enabled=False):
        # log pi(y) = z_y - logsumexp_v z_v,  z = h W^T + b   (fp32, online over vocabulary chunks)
        logps, *_ = ChunkedLogProbFunction.apply(
            hidden.reshape(-1, hidden.size(-1)).float(), weight, bias, labels.reshape(-1),
            1.0, vocab_chunk_size, None, 1.0, (),
        )
    return logps.view(shape)


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
def head_returns_logps(head: torch.nn.Linear, labels: torch.Tensor, vocab_chunk_size: int = VOCAB_CHUNK_SIZE):
    """Within the block, `head(hidden (N, T+1, H))` returns the fp32 log-probs (N, T) of `labels` (N, T) instead of
    logits: position i scores token i+1, so the last position, which predicts past the labels, is dropped.

    Overrides the instance's `forward` (not `__call__`), so hooks on the head, such as ZeRO-3's gather, still run.
    """
    previous = head.__dict__.get("forward")  # an instance-level forward someone else set, restored after

    def forward(hidden):  # (N, T+1, H) -> (N, T)
        return fp32_head_logps(hidden[:, :-1], head.weight, head.bias, labels.to(hidden.device), vocab_chunk_size)

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
    vocab_chunk_size: int = VOCAB_CHUNK_SIZE,
) -> torch.Tensor:
    """log pi(y_t | y_<t) of the last `num_completion` tokens of each row, from an fp32 head, at temperature 1.

    input_ids, attention_mask: (N, L). Returns (N, T) fp32, T = num_completion. The body runs under whatever
    autocast the caller set; see `fp32_head_logps` for the head's memory.
    """
    # the hidden state at position i predicts token i+1: the T completion tokens need the T positions before them,
    # so the head gets the last T+1 positions (logits_to_keep) and drops the last
    labels = input_ids[:, -num_completion:]  # (N, T)
    with head_returns_logps(output_head(model), labels, vocab_chunk_size):
        return model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=num_completion + 1, use_cache=False
        ).logits  # (N, T): the head's output, log-probs here
