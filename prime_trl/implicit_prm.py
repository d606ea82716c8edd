"""`ImplicitPRM`: score any (prompt, response) token by token and step by step with an implicit PRM.

An implicit PRM is a causal LM pi_phi trained only on outcome labels; against its reference pi_ref it gives
every response token the reward r_t = beta * log[pi_phi(y_t|y_<t) / pi_ref(y_t|y_<t)] (paper Eq. 3), and a
step's reward is the sum of the token rewards inside it (so the step rewards sum to the sequence reward
r_phi(y), the logit of P(correct)). The formula is `prime_trl.core.implicit_process_rewards`; the forward passes
are `prime_trl.prm.completion_logps` (temperature 1, fp32 head over the model's own dtype), on the same placements
the trainer uses. A model loaded in bf16 (`dtype="auto"` on a bf16 checkpoint) still rounds in its body; load in
float32 for rewards exact to fp32 (see the README on the implicit reward's precision).

Three kinds of checkpoint load with `ImplicitPRM.from_pretrained(prm_path, ref_path=None, beta=0.05)`:
- a PRM adapter (a directory with `adapter_config.json`, e.g. `<output_dir>/prm` of an adapter-placement
  `PRIMETrainer` run): the base comes from the adapter's `base_model_name_or_path` (or `base_model_path`), and
  the reference is that base with adapters off, exactly as in training, unless `ref_path` is given;
- a full PRM saved by `PRIMETrainer` (separate placement, `<output_dir>/prm`): `ref_path` is required and must
  be the model the PRM started from (the policy's initial model, or `prm_ref_model_name_or_path`);
- a public implicit PRM (e.g. EurusPRM) from a local path: `ref_path` and `beta` as its model card gives them.
A trainer output directory that holds a `prm/` subdirectory resolves to that subdirectory. A PRM trained with
`prm_ref_type="policy"` was scored against the policy as it trained, not against its start: pass the trained
policy (the trainer's saved model) as `ref_path`, for an adapter PRM too (its adapters-off base is its start).

Steps: the response text is cut at configurable separators. A separator made only of whitespace (the default
blank line "\\n\\n") closes the step it ends; any other separator (the action markers such as "[ASSESS]" that
PRIME's system prompt asks every step to begin with) opens a new step. A token belongs to the step holding its
last character.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from prime_trl.core import implicit_process_rewards
from prime_trl.generation import pad_token_id, render_prompt
from prime_trl.prm import PRM_ADAPTER_NAME, AdapterPRM, CompletionBatch, SeparatePRM, completion_logps

logger = logging.getLogger(__name__)

EURUS_ACTION_MARKERS = ("[ASSESS]", "[ADVANCE]", "[VERIFY]", "[SIMPLIFY]", "[SYNTHESIZE]", "[PIVOT]", "[OUTPUT]")
DEFAULT_STEP_SEPARATORS = ("\n\n", *EURUS_ACTION_MARKERS)


# ---------------------------------------------------------------------------------------------
# Steps: text spans, and which tokens fall in them (pure)
# ---------------------------------------------------------------------------------------------


def step_spans(text: str, separators: Sequence[str] = DEFAULT_STEP_SEPARATORS) -> list[tuple[int, int]]:
    """Character spans [start, end) of the steps of `text`; they tile the text, none is empty.

    A whitespace separator (and any whitespace right after it) ends a step; another separator starts one.
    """
    if not text:
        return []
    boundaries = {0, len(text)}
    closing = [s for s in separators if s and not s.strip()]
    opening = [s for s in separators if s and s.strip()]
    if closing:
        # longest first, so "\n\n\n" is one separator, and trailing whitespace stays with it
        pattern = "|".join(re.escape(s) for s in sorted(closing, key=len, reverse=True))
        boundaries |= {m.end() for m in re.finditer(f"(?:{pattern})\\s*", text)}
    if opening:
        pattern = "|".join(re.escape(s) for s in sorted(opening, key=len, reverse=True))
        boundaries |= {m.start() for m in re.finditer(pattern, text)}
    cuts = sorted(boundaries)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def token_step_ids(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Step index of each token: the step holding the token's last character.

    A token with an empty span (a special token such as EOS) joins the step of the token before it (step 0 if
    it comes first), so every token reward counts in exactly one step.
    """
    ids, step, previous = [], 0, 0
    for start, end in offsets:
        if end > start:
            last_char = end - 1
            while step + 1 < len(spans) and spans[step][1] <= last_char:
                step += 1
            while step > 0 and spans[step][0] > last_char:  # offsets are not always monotone
                step -= 1
            previous = step
        ids.append(previous)
    return ids


def sum_by_step(token_rewards: Sequence[float], step_ids: Sequence[int], num_steps: int) -> list[float]:
    """Step reward = sum of the token rewards r_t of its tokens; a step with no token gets 0."""
    sums = [0.0] * num_steps
    for r, s in zip(token_rewards, step_ids):
        sums[s] += r
    return sums


@dataclass
class ProcessRewards:
    """Process rewards of one response.

    tokens: the response's tokens as text pieces (T,); token_rewards: r_t (T,); token_offsets: character span of
    each token in `response` (T,); steps: the step texts (S,); step_rewards: the sum of r_t over each step (S,);
    token_steps: the step of each token (T,).
    """

    prompt: str
    response: str
    tokens: list[str]
    token_rewards: list[float]
    token_offsets: list[tuple[int, int]]
    steps: list[str]
    step_rewards: list[float]
    token_steps: list[int]

    @property
    def sequence_reward(self) -> float:
        """r_phi(y) = sum_t r_t, the logit of the PRM's P(correct)."""
        return sum(self.token_rewards)

    def to_dict(self) -> dict:
        return {**asdict(self), "sequence_reward": self.sequence_reward}

    @classmethod
    def build(
        cls, prompt: str, response: str, tokens: list[str], offsets: list[tuple[int, int]],
        token_rewards: list[float], separators: Sequence[str] = DEFAULT_STEP_SEPARATORS,
    ) -> "ProcessRewards":
        spans = step_spans(response, separators) or [(0, 0)]
        steps_of_tokens = token_step_ids(offsets, spans)
        return cls(
            prompt=prompt, response=response, tokens=tokens, token_rewards=token_rewards, token_offsets=offsets,
            steps=[response[a:b] for a, b in spans],
            step_rewards=sum_by_step(token_rewards, steps_of_tokens, len(spans)),
            token_steps=steps_of_tokens,
        )


# ---------------------------------------------------------------------------------------------
# Tokens and batches
# ---------------------------------------------------------------------------------------------


def offsets_from_ids(tokenizer, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decoded text of `ids` and each token's character span in it, by incremental decoding.

    Works for any tokenizer and for ids that are not the canonical tokenization of their text (sampled ids).
    O(T^2) decoding: meant for the few responses of a visualisation.
    """
    offsets, previous = [], 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(ids[: i + 1]))
        end = max(end, previous)  # a partial UTF-8 character may decode longer, then shorter
        offsets.append((previous, end))
        previous = end
    text = tokenizer.decode(list(ids))
    return text, [(min(a, len(text)), min(b, len(text))) for a, b in offsets]


def encode_response(tokenizer, response: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `response` (no special tokens added) and their character spans (fast-tokenizer offsets)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return list(ids), offsets_from_ids(tokenizer, ids)[1]


def batch_to(batch: CompletionBatch, device) -> CompletionBatch:
    """The same rows on `device`."""
    return CompletionBatch(*(t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.completion_mask)))


def build_completion_batch(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_token_id: int
) -> CompletionBatch:
    """Rows laid out as GRPO lays them out: prompt left-padded, completion right-padded.

    Shapes: input_ids, attention_mask (N, Lp + T); completion_mask (N, T), T the longest completion.
    """
    n = len(prompt_ids)
    max_prompt = max(len(p) for p in prompt_ids)
    max_completion = max(1, max(len(c) for c in completion_ids))
    input_ids = torch.full((n, max_prompt + max_completion), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    completion_mask = torch.zeros((n, max_completion), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        input_ids[i, max_prompt - len(p):max_prompt] = torch.tensor(p, dtype=torch.long)
        input_ids[i, max_prompt:max_prompt + len(c)] = torch.tensor(c, dtype=torch.long)
        attention_mask[i, max_prompt - len(p):max_prompt + len(c)] = 1
        completion_mask[i, :len(c)] = 1
    return CompletionBatch(input_ids, attention_mask, completion_mask)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _resolve_prm_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"PRM path {path!r} is not a directory")
    sub = os.path.join(path, "prm")
    if os.path.isdir(sub) and any(os.path.exists(os.path.join(sub, f)) for f in ("config.json", "adapter_config.json")):
        logger.info("using the PRM saved by PRIMETrainer in %s", sub)
        return sub
    return path


class ImplicitPRM:
    """An implicit PRM with its reference: `score(prompt, response)` -> `ProcessRewards`.

    This is the inference side: it loads a saved PRM and scores text, never trains; the PRM that the trainer
    updates during RL is `prime_trl.prm.OnlinePRM`.

    Args:
        model: the PRM; a PeftModel carrying the adapter `adapter_name` when `ref_model` is None.
        tokenizer: the tokenizer of both models (its chat template renders message-list prompts).
        ref_model: the frozen reference; None means the PEFT base with adapters off.
        beta: the implicit reward's scale (PRIME's `prm_beta`, 0.05 in the paper).
        step_separators: where steps end or begin (see the module docstring).
    """

    def __init__(
        self, model, tokenizer, ref_model=None, beta: float = 0.05,
        step_separators: Sequence[str] = DEFAULT_STEP_SEPARATORS, adapter_name: str = PRM_ADAPTER_NAME,
    ):
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        if ref_model is None:
            if not hasattr(model, "peft_config"):
                raise ValueError("ref_model is required unless the PRM is a PeftModel (reference = adapters off)")
            self.placement = AdapterPRM(model.eval(), adapter_name)
        else:
            self.placement = SeparatePRM(model.eval(), ref_model)
        self.tokenizer = tokenizer
        self.beta = beta
        self.step_separators = tuple(step_separators)

    @classmethod
    def from_pretrained(
        cls,
        prm_path: str,
        ref_path: str | None = None,
        beta: float = 0.05,
        base_model_path: str | None = None,
        tokenizer_path: str | None = None,
        adapter_name: str = PRM_ADAPTER_NAME,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device | None = None,
        step_separators: Sequence[str] = DEFAULT_STEP_SEPARATORS,
    ) -> "ImplicitPRM":
        """Load a PRM adapter, a full PRM with its reference, or a public implicit PRM (see the module docstring).

        `base_model_path` overrides an adapter's recorded base; `tokenizer_path` defaults to the PRM's directory
        if it holds a tokenizer, else the base/reference model's.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        prm_path = _resolve_prm_dir(prm_path)
        load = lambda p: AutoModelForCausalLM.from_pretrained(p, dtype=dtype)  # noqa: E731
        adapter_config = os.path.join(prm_path, "adapter_config.json")
        if os.path.exists(adapter_config):
            from peft import PeftModel

            with open(adapter_config) as f:
                base_path = base_model_path or json.load(f).get("base_model_name_or_path")
            if not base_path:
                raise ValueError(f"{adapter_config} names no base model: pass base_model_path")
            model = PeftModel.from_pretrained(load(base_path), prm_path, adapter_name=adapter_name)
            ref_model = load(ref_path) if ref_path else None
            fallback_tokenizer = base_path
        else:
            if ref_path is None:
                raise ValueError(
                    f"{prm_path} is a full model, so its reference must be given: ref_path = the model the PRM "
                    "started from (for PRIMETrainer the policy's initial model or prm_ref_model_name_or_path, or the "
                    "trained policy with prm_ref_type='policy'; for a public implicit PRM the reference its model "
                    "card names)"
                )
            model, ref_model = load(prm_path), load(ref_path)
            fallback_tokenizer = ref_path
        tokenizer_files = ("tokenizer.json", "tokenizer_config.json")
        has_tokenizer = any(os.path.exists(os.path.join(prm_path, f)) for f in tokenizer_files)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or (prm_path if has_tokenizer else fallback_tokenizer))
        if device is not None:
            model = model.to(device)
            ref_model = ref_model.to(device) if ref_model is not None else None
        return cls(model, tokenizer, ref_model, beta, step_separators, adapter_name)

    @property
    def device(self) -> torch.device:
        return next(self.placement.model.parameters()).device

    # -- rewards on token ids ------------------------------------------------------------------------
    @torch.no_grad()
    def token_rewards(self, batch: CompletionBatch) -> torch.Tensor:
        """r_t for each completion token of `batch`, (N, T), 0 on padding."""
        batch = batch_to(batch, self.device)
        with self.placement.prm_scope() as module:
            prm_logps = completion_logps(module, batch).float()  # (N, T)
        with self.placement.ref_scope() as module:
            ref_logps = completion_logps(module, batch).float()  # (N, T)
        # r_t = beta * (log pi_phi(y_t|y_<t) - log pi_ref(y_t|y_<t))
        return implicit_process_rewards(prm_logps, ref_logps, batch.completion_mask, self.beta).cpu()

    # -- rewards on text ------------------------------------------------------------------------------
    def render_prompt(self, prompt) -> str:
        """Message lists go through the chat template (with the generation prompt); strings are used as is."""
        return render_prompt(self.tokenizer, prompt)

    def score(self, prompt, response: str) -> ProcessRewards:
        """Process rewards of one response to `prompt` (a string or a list of chat messages)."""
        return self.score_batch([(prompt, response)], progress=False)[0]

    def score_batch(
        self, pairs: Sequence[tuple], batch_size: int = 8, progress: bool = True
    ) -> list[ProcessRewards]:
        """`score` for many (prompt, response) pairs, `batch_size` rows per forward pass."""
        from tqdm.auto import tqdm

        pad = pad_token_id(self.tokenizer)
        results: list[ProcessRewards] = []
        for start in tqdm(range(0, len(pairs), batch_size), desc="PRM scoring", disable=not progress):
            chunk = pairs[start:start + batch_size]
            prompts = [self.render_prompt(p) for p, _ in chunk]
            prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            encoded = [encode_response(self.tokenizer, r) for _, r in chunk]
            rewards = self.token_rewards(build_completion_batch(prompt_ids, [ids for ids, _ in encoded], pad))
            for (_, response), prompt, (ids, offsets), row in zip(chunk, prompts, encoded, rewards):
                tokens = [response[a:b] if b > a else self.tokenizer.decode([i]) for i, (a, b) in zip(ids, offsets)]
                results.append(ProcessRewards.build(
                    prompt, response, tokens, offsets, row[: len(ids)].tolist(), self.step_separators
                ))
        return results
