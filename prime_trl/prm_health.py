"""PRM health on a fixed held-out pool of rollouts: pairwise accuracy, length drift, error localisation.

The PRM's training-batch accuracy (`prm/accuracy`) is measured on rows it is about to learn from; it says
little about whether the PRM generalises. Here the PRM scores a *fixed* pool of rollouts it never trains on:

    pool = sample_rollout_pool(model, tokenizer, heldout_rows, num_generations=4)   # or load_rollout_pool(path)
    pool.save("pool.jsonl")
    PRMHealthCallback.attach(trainer, pool, every_n_steps=25)      # logs prm/heldout_* during training
    prm_health(ImplicitPRM.from_pretrained(...).token_rewards, tokenize_pool(pool, tokenizer))   # offline
    OnPolicyPRMHealthCallback.attach(trainer, heldout_rows, every_n_steps=25)   # prm/onpolicy_*: fresh rollouts

A fixed pool holds the start policy's rollouts; the PRM scores the current policy's, whose mistakes move as it
learns, so `OnPolicyPRMHealthCallback` samples its pool anew from the policy at each measurement.

A pool file has one JSON record per prompt: `prompt` (text or chat messages), `completions` (G texts),
`scores` (G outcomes in [0, 1]) and optionally `first_wrong_steps` (G step indices, null where unknown or
correct) -- the `samples.jsonl` that `prime-trl eval` writes is such a file. The metrics (`HEALTH_KEYS`):
- `heldout_pairwise_accuracy`: within a prompt's G rollouts, how often the summed reward orders a right one
  above a wrong one, averaged over the prompts that have both (0.5 is chance, and what a pool without
  such a prompt gives; `prime_trl.core.prm_pairwise_accuracy`);
- `heldout_pairwise_accuracy_mean`: the same with the mean token reward, which a length drift cannot move;
- `heldout_length_correlation`: Pearson r of the sequence reward with the completion length (drift);
- `heldout_error_localisation` (and `_chance`): how often a wrong rollout's lowest-reward step is its first
  wrong one, where the pool knows it;
- `heldout_mixed_groups`: how many prompts hold both a right and a wrong rollout, the ones the pairwise
  accuracy averages over: with n of them, its 95% sampling interval is at most about ±1/sqrt(n) wide.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from prime_trl.core import error_localisation, length_correlation, prm_pairwise_accuracy
from prime_trl.evaluation.jsonl import read_jsonl
from prime_trl.generation import generate_texts, pad_token_id, render_prompt
from prime_trl.implicit_prm import batch_to, build_completion_batch, encode_response, step_spans, token_step_ids
from prime_trl.prm import CompletionBatch

HEALTH_KEYS = (
    "heldout_pairwise_accuracy",
    "heldout_pairwise_accuracy_mean",
    "heldout_length_correlation",
    "heldout_error_localisation",
    "heldout_error_localisation_chance",
    "heldout_mixed_groups",
)


@dataclass
class RolloutPool:
    """P prompts x G rollouts with their outcomes; `first_wrong_steps[p][g]` is None where unknown or correct."""

    prompts: list
    completions: list[list[str]]
    scores: list[list[float]]
    first_wrong_steps: list[list[int | None]] | None = None

    @property
    def num_generations(self) -> int:
        return len(self.completions[0]) if self.completions else 0

    @classmethod
    def from_records(cls, records: Sequence[dict]) -> "RolloutPool":
        """One record per prompt (see the module docstring); a bad record raises naming the record and field."""
        if not records:
            raise ValueError("the rollout pool is empty")
        G = None
        for i, record in enumerate(records):
            for key in ("prompt", "completions", "scores"):
                if key not in record:
                    raise ValueError(f"record {i}: field {key!r} is missing")
            G = len(record["completions"]) if G is None else G
            if len(record["completions"]) != G or len(record["scores"]) != G:
                raise ValueError(f"record {i}: every record needs the same number of completions and scores ({G})")
            if "first_wrong_steps" in record and len(record["first_wrong_steps"]) != G:
                raise ValueError(f"record {i}: field 'first_wrong_steps' needs {G} entries")
        steps = None
        if any("first_wrong_steps" in r for r in records):
            steps = [list(r.get("first_wrong_steps", [None] * G)) for r in records]
        return cls(
            [r["prompt"] for r in records],
            [list(r["completions"]) for r in records],
            [[float(s) for s in r["scores"]] for r in records],
            steps,
        )

    def records(self) -> list[dict]:
        steps = self.first_wrong_steps or [None] * len(self.prompts)
        return [
            {"prompt": p, "completions": c, "scores": s, **({"first_wrong_steps": k} if k is not None else {})}
            for p, c, s, k in zip(self.prompts, self.completions, self.scores, steps)
        ]

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.records())


def load_rollout_pool(path: str) -> RolloutPool:
    return RolloutPool.from_records(read_jsonl(path))


def sample_rollout_pool(
    model,
    tokenizer,
    rows: Sequence[dict],
    num_generations: int = 4,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    first_wrong_step: Callable[[dict, str], int | None] | None = None,
    top_p: float = 1.0,
) -> RolloutPool:
    """Sample G rollouts per held-out row (`prompt`, `ground_truth`, `ability`) and score them with the verifiers.

    `first_wrong_step(row, completion)`, where a task knows it, gives the index of the first wrong step.
    """
    from prime_trl.evaluation import verify

    prompts = [r["prompt"] for r in rows]
    torch.manual_seed(seed)
    completions = generate_texts(model, tokenizer, prompts, num_generations, temperature, top_p, max_new_tokens,
                                 batch_size, progress=False)  # fmt: skip
    scores = verify(rows, completions)
    steps = None
    if first_wrong_step is not None:
        steps = [[first_wrong_step(r, c) for c in group] for r, group in zip(rows, completions)]
    return RolloutPool(prompts, completions, scores, steps)


@dataclass
class TokenizedPool:
    """A pool as token ids: N = P*G rows, `step_ids[i][t]` the step of completion token t (EOS: the last step)."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    step_ids: list[list[int]]
    scores: torch.Tensor  # (N,)
    first_wrong_steps: torch.Tensor  # (N,), -1 where unknown
    num_generations: int


def tokenize_pool(
    pool: RolloutPool, tokenizer, step_separators: Sequence[str] = ("\n\n",), append_eos: bool = True
) -> TokenizedPool:
    """Tokenize as training scores: chat-rendered prompt, the completion, and EOS (a scored token in training)."""
    prompt_ids, completion_ids, step_ids, scores, first_wrong = [], [], [], [], []
    steps = pool.first_wrong_steps or [[None] * pool.num_generations for _ in pool.prompts]
    for prompt, group, group_scores, group_steps in zip(pool.prompts, pool.completions, pool.scores, steps):
        ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        for completion, score, k in zip(group, group_scores, group_steps):
            tokens, offsets = encode_response(tokenizer, completion)
            if append_eos:
                tokens, offsets = [*tokens, tokenizer.eos_token_id], [*offsets, (0, 0)]  # (0, 0): joins the last step
            prompt_ids.append(ids)
            completion_ids.append(tokens)
            step_ids.append(token_step_ids(offsets, step_spans(completion, step_separators) or [(0, 0)]))
            scores.append(score)
            first_wrong.append(-1 if k is None else k)
    return TokenizedPool(prompt_ids, completion_ids, step_ids, torch.tensor(scores), torch.tensor(first_wrong),
                         pool.num_generations)  # fmt: skip


def pool_token_rewards(
    token_rewards: Callable[[CompletionBatch], torch.Tensor], pool: TokenizedPool, pad_token_id: int = 0,
    batch_size: int = 32,
) -> list[torch.Tensor]:
    """r_t of every pool row, one (|y_i|,) tensor per row, scored `batch_size` rows at a time."""
    rows = []
    for start in range(0, len(pool.completion_ids), batch_size):
        chunk = slice(start, start + batch_size)
        batch = build_completion_batch(pool.prompt_ids[chunk], pool.completion_ids[chunk], pad_token_id)
        rewards = token_rewards(batch).float().cpu()  # (n, T)
        rows += [r[: len(ids)] for r, ids in zip(rewards, pool.completion_ids[chunk])]
    return rows


def prm_health(
    token_rewards: Callable[[CompletionBatch], torch.Tensor], pool: TokenizedPool, pad_token_id: int = 0,
    batch_size: int = 32,
) -> dict[str, float]:
    """The `HEALTH_KEYS` metrics of a PRM on `pool`; `token_rewards(batch) -> (n, T)` is r_t of each row."""
    return health_of_rewards(pool_token_rewards(token_rewards, pool, pad_token_id, batch_size), pool)


def health_of_rewards(rows: list[torch.Tensor], pool: TokenizedPool) -> dict[str, float]:
    """The `HEALTH_KEYS` metrics from r_t already scored: rows[i] (|y_i|,) for pool row i (`pool_token_rewards`)."""
    N, T = len(rows), max(len(r) for r in rows)
    rewards, mask = torch.zeros(N, T), torch.zeros(N, T, dtype=torch.long)  # (N, T)
    step_ids = torch.zeros(N, T, dtype=torch.long)  # (N, T)
    for i, (r, s) in enumerate(zip(rows, pool.step_ids)):
        rewards[i, : len(r)], mask[i, : len(r)], step_ids[i, : len(s)] = r, 1, torch.tensor(s)
    lengths = mask.sum(-1)  # (N,)
    num_steps = torch.tensor([max(s) + 1 for s in pool.step_ids])  # (N,)
    # R_{i,s} = sum of r_t over the tokens of step s
    step_rewards = torch.zeros(N, int(num_steps.max())).scatter_add_(1, step_ids, rewards * mask)  # (N, S)
    step_mask = (torch.arange(step_rewards.shape[1]) < num_steps.unsqueeze(-1)).long()  # (N, S)
    hit, chance = error_localisation(step_rewards, step_mask, pool.first_wrong_steps)
    G = pool.num_generations
    # only groups with a right and a wrong rollout hold a pair to rank; the others would pull the mean to 1/2
    grouped = pool.scores.reshape(-1, G)  # (P, G)
    mixed = (grouped.amax(-1) > grouped.amin(-1)).repeat_interleave(G)  # (N,)
    scores, kept_mask, kept = pool.scores[mixed], mask[mixed], rewards[mixed]
    values = {
        "heldout_pairwise_accuracy": prm_pairwise_accuracy(kept, scores, kept_mask, G),
        # dividing every r_t by |y| orders rows by their mean token reward instead of the sum
        "heldout_pairwise_accuracy_mean": prm_pairwise_accuracy(
            kept / lengths[mixed].unsqueeze(-1), scores, kept_mask, G
        ),
        "heldout_length_correlation": length_correlation(rewards.sum(-1), lengths),
        "heldout_error_localisation": hit,
        "heldout_error_localisation_chance": chance,
        "heldout_mixed_groups": int(mixed.sum()) // G,
    }
    return {key: float(values[key]) for key in HEALTH_KEYS}


class PRMHealthCallback(TrainerCallback):
    """Logs `prm/heldout_*` every `every_n_steps` optimizer steps (and at the start and end of training).

    The PRM of a `PRIMETrainer` scores the fixed `pool` exactly as in training (`trainer.prm.score`, EOS
    included). Values join the step's log entry, so loggers and `trainer.state.log_history` see them;
    `history` keeps every measurement, step 0 included. Main process only (one process or DDP).
    Use `PRMHealthCallback.attach(trainer, pool, ...)`: it puts the callback ahead of the loggers.
    """

    def __init__(self, trainer, pool: RolloutPool | None, every_n_steps: int = 25,
                 step_separators: Sequence[str] = ("\n\n",), batch_size: int = 32):  # fmt: skip
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.trainer, self.every_n_steps, self.batch_size = trainer, every_n_steps, batch_size
        # None: a subclass builds the pool at each measurement
        self.pool = tokenize_pool(pool, trainer.processing_class, step_separators) if pool is not None else None
        self.history: list[dict] = []
        self._pending: dict[str, float] = {}

    @classmethod
    def attach(cls, trainer, *args, **kwargs) -> "PRMHealthCallback":
        """The callback built from `(trainer, *args, **kwargs)`, placed first so its values reach the loggers."""
        callback = cls(trainer, *args, **kwargs)
        trainer.callback_handler.callbacks.insert(0, callback)
        return callback

    def measure(self, step: int) -> dict[str, float]:
        metrics = self.metrics(step)
        self.history.append({"step": step, **metrics})
        return metrics

    def metrics(self, step: int) -> dict[str, float]:
        rows = pool_token_rewards(self.token_rewards, self.pool, pad_token_id(self.trainer.processing_class),
                                  self.batch_size)  # fmt: skip
        return {f"prm/{k}": v for k, v in health_of_rewards(rows, self.pool).items()}

    def token_rewards(self, batch: CompletionBatch) -> torch.Tensor:
        """r_t of the trainer's PRM as in training: against its `prm_ref_type` reference, EOS included."""
        batch = batch_to(batch, self.trainer.accelerator.device)
        return self.trainer.prm.score(batch, self.trainer.prm.reference_logps(batch))

    def reference_logps(self, batch: CompletionBatch) -> torch.Tensor:
        """log pi_ref(y_t | y_<t): the reference's own likelihood, the ranking a PRM has to beat."""
        return self.trainer.prm.reference_logps(batch_to(batch, self.trainer.accelerator.device))

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.measure(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        due = state.global_step % self.every_n_steps == 0 or state.global_step == state.max_steps
        if due and state.is_world_process_zero:
            self._pending = self.measure(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending and logs is not None:
            logs.update(self._pending)
            if state.log_history:  # Trainer.log appended a copy of `logs` before calling the callbacks
                state.log_history[-1].update(self._pending)
            self._pending = {}


class OnPolicyPRMHealthCallback(PRMHealthCallback):
    """`PRMHealthCallback` on rollouts of the policy as it is at each measurement, not a fixed pool.

    PRIME scores the current policy's rollouts, whose mistakes move as the policy learns; a fixed pool of the
    start policy's rollouts can rank well while these do not. Each measurement samples `num_generations`
    rollouts of every held-out row (`prompt`, `ground_truth`, `ability`; `sample_rollout_pool`, scored by the
    verifiers) from the policy, at the trainer's temperature, top_p and completion length unless given, and
    logs `prm/onpolicy_*` (the `HEALTH_KEYS` renamed) and `prm/onpolicy_reference_pairwise_accuracy`, the
    PRM's reference's own log-likelihood on the same rollouts (with `prm_ref_type="policy"`, the policy's). The
    rollouts are decoded and tokenized again as a pool file would be (EOS appended), so ids can differ from the
    sampled ones where a tokenizer does not round-trip.
    Sampling runs under a forked RNG, so training draws the same random numbers as without the callback.
    Main process only: under DDP the other ranks wait in their next collective meanwhile (mind `ddp_timeout`
    with large models); refused where the policy is sharded.
    """

    def __init__(self, trainer, rows: Sequence[dict], num_generations: int = 4, max_new_tokens: int | None = None,
                 temperature: float | None = None, top_p: float | None = None,
                 first_wrong_step: Callable[[dict, str], int | None] | None = None, every_n_steps: int = 25,
                 step_separators: Sequence[str] = ("\n\n",), batch_size: int = 32, generation_batch_size: int = 16,
                 seed: int = 0):  # fmt: skip
        from prime_trl.placement import sharding_backend

        backend = sharding_backend(trainer.accelerator)
        if backend:
            raise ValueError(f"OnPolicyPRMHealthCallback samples from the policy on the main process only, which "
                             f"{backend} shards across processes; use PRMHealthCallback with a fixed pool")
        if not rows:
            raise ValueError("OnPolicyPRMHealthCallback needs held-out rows to sample from")
        if num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (a pair to rank within each prompt), got {num_generations}")
        super().__init__(trainer, None, every_n_steps, step_separators, batch_size)
        args = trainer.args
        self.rows, self.num_generations = list(rows), num_generations
        self.max_new_tokens = max_new_tokens or args.max_completion_length
        self.temperature = args.temperature if temperature is None else temperature
        self.top_p = args.top_p if top_p is None else top_p
        self.first_wrong_step, self.step_separators = first_wrong_step, step_separators
        self.generation_batch_size, self.seed = generation_batch_size, seed

    def sample_pool(self, step: int) -> RolloutPool:
        """The held-out rows' rollouts by the policy now, seeded by `seed + step`."""
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training, kind = model.training, model.device.type
        # the CPU generator and the one of the device generation samples on; the training RNG resumes untouched
        with torch.random.fork_rng(devices=[] if kind == "cpu" else [model.device], device_type=kind):
            try:
                return sample_rollout_pool(
                    model.eval(), self.trainer.processing_class, self.rows, self.num_generations,
                    self.max_new_tokens, self.temperature, self.generation_batch_size, seed=self.seed + step,
                    first_wrong_step=self.first_wrong_step, top_p=self.top_p,
                )
            finally:
                model.train(was_training)

    def metrics(self, step: int) -> dict[str, float]:
        self.pool = tokenize_pool(self.sample_pool(step), self.trainer.processing_class, self.step_separators)
        pad = pad_token_id(self.trainer.processing_class)
        references: list[torch.Tensor] = []  # (n, T) chunks of log pi_ref, kept from the pass r_t needs anyway

        def token_rewards(batch: CompletionBatch) -> torch.Tensor:
            batch = batch_to(batch, self.trainer.accelerator.device)
            reference = self.trainer.prm.reference_logps(batch)
            references.append(reference.float().cpu())
            return self.trainer.prm.score(batch, reference)

        rewards = pool_token_rewards(token_rewards, self.pool, pad, self.batch_size)
        reference_rows = [row for chunk in references for row in chunk]
        reference_rows = [row[: len(ids)] for row, ids in zip(reference_rows, self.pool.completion_ids)]
        prm, ref = health_of_rewards(rewards, self.pool), health_of_rewards(reference_rows, self.pool)
        metrics = {f"prm/onpolicy_{k.removeprefix('heldout_')}": v for k, v in prm.items()}
        metrics["prm/onpolicy_reference_pairwise_accuracy"] = ref["heldout_pairwise_accuracy"]
        return metrics
