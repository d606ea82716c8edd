"""The implicit reward's log-probs under bf16 autocast: the fp32 head against oracles, both PRM placements.

Setup of the bf16 tests: a tiny Qwen2 as reference and a PRM one AdamW step at lr 1e-6 (the paper's PRM rate) away
from it, scored under CPU bf16 autocast (GRPO's GPU default). The true log-ratios are ~1e-4 (separate) and ~1e-5
(adapter). What the fp32 head guarantees, and what is tested:
- the head adds no rounding: the log-probs equal an fp64 softmax of the very hidden states the bf16 body produced
  (1e-5 each, 2e-6 for a log-ratio, i.e. a few fp32 spacings), so a log-ratio is exactly 0 only where those hidden
  states give a log-ratio below fp32 resolution; the bf16-logit path is 0 on most of the others;
- against the all-fp32 computation, the separate PRM's log-ratios have no exact zeros and a per-token error below
  2e-3 (the bf16 body's rounding; the bf16-logit path errs by 1e-2 and more, and is 0 on most tokens).
The bf16 body itself still rounds the PRM's small change: the adapter adds a delta ~1e-5 to bf16 layer outputs, so
after one lr-1e-6 step most tokens' hidden states, and so their log-ratios, have not moved (measured in
bench/implicit_reward_precision.py).
"""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from trl.trainer.utils import selective_log_softmax

from prime_trl.logprobs import fp32_head_logps, output_head
from prime_trl.prm import AdapterPRM, CompletionBatch, SeparatePRM, completion_logps
from prime_trl.tiny import build_model, build_tokenizer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PRM_LR = 1e-6
HEAD_TOLERANCE = 1e-5  # fp32 head vs an fp64 head on the same hidden states, per log-prob
RATIO_RESOLUTION = 2e-6  # the same, for a log-ratio: ~4 fp32 spacings of log-probs near -6 (2^-21 = 4.8e-7)
BODY_TOLERANCE = 2e-3  # bf16 body + fp32 head vs all-fp32, per token (measured max 1.4e-3)


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


# -- the head on its own ---------------------------------------------------------------------------------


def _loop_oracle(hidden, weight, bias, labels):
    """log softmax(h W^T + b)[y] one token at a time, in fp64, over the whole vocabulary at once."""
    out = torch.empty(labels.shape, dtype=torch.float64)
    for i in range(labels.size(0)):
        logits = hidden[i].double() @ weight.double().T + (0 if bias is None else bias.double())  # (V,)
        out[i] = logits[labels[i]] - torch.logsumexp(logits, dim=-1)
    return out


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])  # fp32 master weights; a bf16-loaded head
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_head_equals_unchunked_values_and_gradients(with_bias, weight_dtype):
    torch.manual_seed(0)
    m, h, v = 13, 16, 50
    hidden = torch.randn(m, h, dtype=torch.bfloat16, requires_grad=True)
    weight = (0.3 * torch.randn(v, h)).to(weight_dtype).requires_grad_()
    bias = torch.randn(v, requires_grad=True) if with_bias else None
    labels = torch.randint(0, v, (m,))
    params = [hidden, weight] + ([bias] if with_bias else [])

    # chunks of 3 rows (13 is no multiple of 3) against one chunk holding every row
    chunked = fp32_head_logps(hidden, weight, bias, labels, rows_per_chunk=3)
    whole = fp32_head_logps(hidden, weight, bias, labels, rows_per_chunk=m)
    oracle = _loop_oracle(hidden, weight, bias, labels)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked.double(), oracle, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)

    weights = torch.randn(m)  # a loss that weighs tokens differently, as the PRM's BCE does
    grads = [torch.autograd.grad((out * weights).sum(), params) for out in (chunked, whole, oracle)]
    for p, got, unchunked, want in zip(params, *grads):
        assert got.dtype == p.dtype  # each gradient in its parameter's dtype
        tol = 1e-2 if p.dtype == torch.bfloat16 else 1e-5  # bf16 gradients are rounded to 8 bits
        torch.testing.assert_close(got.double(), unchunked.double(), atol=tol, rtol=tol)
        torch.testing.assert_close(got.double(), want.double(), atol=tol, rtol=tol)


def test_autocast_does_not_reach_the_head():
    torch.manual_seed(0)
    hidden, weight, labels = torch.randn(6, 16), torch.randn(40, 16), torch.randint(0, 40, (6,))
    with bf16_autocast():
        under_autocast = fp32_head_logps(hidden, weight, None, labels)
    torch.testing.assert_close(under_autocast, fp32_head_logps(hidden, weight, None, labels), atol=0, rtol=0)


# -- models ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    """4 rows: left-padded prompts of 5-8 tokens, right-padded completions of 14-20 tokens (N=4, T=20)."""
    g = torch.Generator().manual_seed(1)
    n, lp, t = 4, 8, 20
    input_ids = torch.randint(3, len(tokenizer), (n, lp + t), generator=g)
    attention_mask = torch.ones_like(input_ids)
    completion_mask = torch.ones((n, t), dtype=torch.long)
    for row, (prompt_len, completion_len) in enumerate([(8, 20), (5, 17), (7, 14), (6, 20)]):
        attention_mask[row, : lp - prompt_len] = 0
        attention_mask[row, lp + completion_len:] = 0
        completion_mask[row, completion_len:] = 0
        input_ids[row, : lp - prompt_len] = tokenizer.pad_token_id
        input_ids[row, lp + completion_len:] = tokenizer.pad_token_id
    return CompletionBatch(input_ids, attention_mask, completion_mask)


def _one_prm_step(placement, batch):
    """One AdamW step at the paper's PRM rate on the PRM's log-likelihood of `batch` (fp32)."""
    with placement.prm_scope() as model:
        optimizer = torch.optim.AdamW(placement.trainable_parameters(), lr=PRM_LR)
        (-(completion_logps(model, batch) * batch.completion_mask).sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    return placement


@pytest.fixture(scope="module")
def separate(tokenizer, batch):
    ref = build_model(tokenizer, hidden_size=64, num_layers=2)
    return _one_prm_step(SeparatePRM(copy.deepcopy(ref).train(), ref), batch)


@pytest.fixture(scope="module")
def adapter(tokenizer, batch):
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(build_model(tokenizer, hidden_size=64, num_layers=2), lora)
    model.add_adapter("prm", lora)
    placement = AdapterPRM(model)
    return _one_prm_step(placement, batch)


def _logps_and_head_inputs(scope, batch):
    """Log-probs (N, T), the hidden states the head received for the completion tokens (N, T, H), its weight."""
    with scope() as model:
        captured, head = [], output_head(model)
        hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
        try:
            logps = completion_logps(model, batch)
        finally:
            hook.remove()
    return logps, captured[0][:, :-1], head.weight


def _bf16_logit_logps(scope, batch):
    """The previous path: bf16 logits from the model, log-softmax in bf16 (TRL's selective_log_softmax)."""
    t = batch.completion_mask.size(1)
    with scope() as model:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=t + 1).logits
    return selective_log_softmax(logits[:, :-1], batch.input_ids[:, -t:]).float()


PLACEMENTS = ["separate", "adapter"]


@pytest.mark.parametrize("placement_name", PLACEMENTS)
def test_fp32_model_logps_match_the_models_own_logits(placement_name, request, batch):
    # no autocast: the fp32 head is log_softmax of the logits the model's own forward returns, at the right positions
    placement = request.getfixturevalue(placement_name)
    t = batch.completion_mask.size(1)
    for scope in (placement.prm_scope, placement.ref_scope):
        with torch.no_grad(), scope() as model:
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, -t - 1:-1]
            expected = logits.double().log_softmax(-1).gather(-1, batch.input_ids[:, -t:, None]).squeeze(-1)
            torch.testing.assert_close(completion_logps(model, batch).double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("placement_name", PLACEMENTS)
def test_bf16_head_adds_no_rounding_so_no_spurious_zeros(placement_name, request, batch):
    placement = request.getfixturevalue(placement_name)
    mask = batch.completion_mask.bool()
    with torch.no_grad(), bf16_autocast():
        prm_logps, prm_hidden, prm_weight = _logps_and_head_inputs(placement.prm_scope, batch)
        ref_logps, ref_hidden, ref_weight = _logps_and_head_inputs(placement.ref_scope, batch)
        old_ratio = (_bf16_logit_logps(placement.prm_scope, batch) - _bf16_logit_logps(placement.ref_scope, batch))
    labels = batch.input_ids[:, -batch.completion_mask.size(1):]
    oracles = []
    for logps, hidden, weight in ((prm_logps, prm_hidden, prm_weight), (ref_logps, ref_hidden, ref_weight)):
        oracles.append(_loop_oracle(hidden[mask], weight, None, labels[mask]))  # fp64 head, the bf16 body's hidden
        torch.testing.assert_close(logps[mask].double(), oracles[-1], atol=HEAD_TOLERANCE, rtol=0)

    ratio, oracle_ratio = (prm_logps - ref_logps)[mask].double(), oracles[0] - oracles[1]
    torch.testing.assert_close(ratio, oracle_ratio, atol=RATIO_RESOLUTION, rtol=0)
    resolved = oracle_ratio.abs() > RATIO_RESOLUTION  # the bf16 body's hidden states moved the log-ratio visibly
    assert resolved.any()
    assert not ((ratio == 0) & resolved).any(), "a zero log-ratio where the PRM's hidden states give a nonzero one"
    # the same setup catches the bf16-logit path: zero on most of those tokens
    assert (old_ratio[mask][resolved] == 0).float().mean() > 0.5


def test_bf16_separate_prm_log_ratios_match_fp32(separate, batch):
    mask = batch.completion_mask.bool()
    scopes = (separate.prm_scope, separate.ref_scope)
    with torch.no_grad():
        exact = torch.sub(*(_logps_and_head_inputs(s, batch)[0] for s in scopes))[mask]  # all fp32
        with bf16_autocast():
            ratio = torch.sub(*(_logps_and_head_inputs(s, batch)[0] for s in scopes))[mask]
            old_ratio = torch.sub(*(_bf16_logit_logps(s, batch) for s in scopes))[mask]
    assert exact.abs().min() > 0 and exact.abs().mean() < 1e-3  # one small step: true ratios are tiny, none 0
    assert (ratio != 0).all()
    assert (ratio - exact).abs().max() < BODY_TOLERANCE
    # the bf16-logit path in the same setup: 0 on most tokens, and errors beyond the tolerance
    assert (old_ratio == 0).float().mean() > 0.5 and (old_ratio - exact).abs().max() > 5 * BODY_TOLERANCE


@pytest.mark.parametrize("placement_name", PLACEMENTS)
def test_prm_update_gets_gradients_through_the_fp32_head(placement_name, request, batch):
    placement = request.getfixturevalue(placement_name)
    params = placement.trainable_parameters()
    with placement.prm_scope() as model:
        with bf16_autocast():
            bf16_loss = -(completion_logps(model, batch) * batch.completion_mask).sum()
        bf16_grads = torch.autograd.grad(bf16_loss, params)
        fp32_grads = torch.autograd.grad(-(completion_logps(model, batch) * batch.completion_mask).sum(), params)
    assert all(g.dtype == p.dtype and torch.isfinite(g).all() for g, p in zip(bf16_grads, params))
    flat_bf16, flat_fp32 = torch.cat([g.flatten() for g in bf16_grads]), torch.cat([g.flatten() for g in fp32_grads])
    assert flat_bf16.abs().sum() > 0
    # the same direction as the fp32 gradient: the bf16 body backpropagates what the fp32 head sends it
    assert torch.nn.functional.cosine_similarity(flat_bf16, flat_fp32, dim=0) > 0.99
    if placement_name == "separate":  # the tied embedding / head weight learns through the fp32 head too
        head_grad = dict(zip((id(p) for p in params), bf16_grads))[id(output_head(placement.model).weight)]
        assert head_grad.abs().sum() > 0


# -- heads it cannot reproduce -----------------------------------------------------------------------------


def test_logit_softcapping_is_refused_by_name(tokenizer):
    model = build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping=30.0"):
        output_head(model)


def test_lora_on_the_head_is_refused(tokenizer):
    lora = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], task_type="CAUSAL_LM")
    model = get_peft_model(build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1), lora)
    with pytest.raises(ValueError, match="lm_head out of the adapter's target_modules"):
        output_head(model)


def test_an_instance_level_head_forward_is_restored(tokenizer, batch):
    # TRL's cast_lm_head_to_fp32 replaces the head's forward on the instance; scoring must leave that in place
    model = build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    head = output_head(model)
    trl_forward = lambda hidden: torch.nn.functional.linear(hidden.float(), head.weight.float())  # noqa: E731
    head.forward = trl_forward
    with torch.no_grad():
        logps = completion_logps(model, batch)
    assert head.forward is trl_forward
    del head.forward
    with torch.no_grad():
        assert "forward" not in head.__dict__ and torch.equal(completion_logps(model, batch), logps)
        assert "forward" not in head.__dict__
