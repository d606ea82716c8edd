"""The implicit PRM: where it lives, its frozen reference, its optimizer, `score()` and `update()`.

PRIME's PRM is a causal LM pi_prm trained with a cross-entropy loss on outcome labels; its token reward is
r_t = beta * (log pi_prm(y_t|y_<t) - log pi_ref(y_t|y_<t)) (paper Eq. 3). The formulas live in
`prime_trl.core`; this module only runs the forward passes and the optimizer.

Two placements (`PLACEMENTS`):
- `SeparatePRM`: a full model plus a frozen reference model (the authors' layout).
- `AdapterPRM`: a second LoRA adapter on the policy's PEFT model; the reference is the base with all
  adapters disabled, so PRIME fits in the memory of about one model.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel
from trl.trainer.utils import use_adapter

from prime_trl.core import implicit_process_rewards, prm_ce_loss, prm_dpo_loss, sequence_implicit_rewards
from prime_trl.logprobs import completion_token_logps

PRM_ADAPTER_NAME = "prm"


@dataclass
class CompletionBatch:
    """Rows of prompt + completion, as GRPO builds them.

    input_ids:       (N, L)  prompt (left-padded) then completion (right-padded), L = prompt length + T
    attention_mask:  (N, L)
    completion_mask: (N, T)  1 on completion tokens (EOS included), 0 on padding
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.size(0)

    def rows(self, index: torch.Tensor) -> "CompletionBatch":
        return CompletionBatch(self.input_ids[index], self.attention_mask[index], self.completion_mask[index])

    def split(self, size: int) -> list[torch.Tensor]:
        """Row-index chunks of at most `size` rows."""
        return list(torch.arange(len(self), device=self.input_ids.device).split(size))

    def filler(self) -> "CompletionBatch":
        """One all-padding row of this batch's shape. A process with no rows left runs it (zero loss) so that it
        still joins the gradient all-reduce of processes that have rows."""
        input_ids = self.input_ids.new_zeros((1, self.input_ids.size(1)))
        completion_mask = self.completion_mask.new_zeros((1, self.completion_mask.size(1)))
        return CompletionBatch(input_ids, torch.ones_like(input_ids), completion_mask)


def completion_logps(model: torch.nn.Module, batch: CompletionBatch) -> torch.Tensor:
    """Per-token log pi(y_t | y_<t) of the completion tokens at temperature 1, from an fp32 LM head.

    Returns (N, T) fp32. The body runs under the caller's autocast (bf16 on GPU), the head in fp32: bf16 logits
    round log-probs to ~2^-5, which erases the small PRM-vs-reference differences the implicit reward is made of.
    Unlike TRL's fused head (which bakes the sampling temperature in), this always scores at temperature 1: the
    implicit reward is a log-likelihood ratio of the PRM, not of the sampler.
    """
    return completion_token_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask.size(1))


class SeparatePRM:
    """PRM and reference are models of their own; the reference is frozen."""

    def __init__(self, prm: torch.nn.Module, ref: torch.nn.Module):
        self.model = prm
        # None with prm_ref_type="policy": the policy's log-probs are the reference
        self.ref_model = ref.requires_grad_(False).eval() if ref is not None else None

    @contextmanager
    def prm_scope(self):
        yield self.model

    @contextmanager
    def ref_scope(self):
        yield self.ref_model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def load(self, prm_dir: str) -> None:
        module = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        load_full_weights(module, prm_dir)


def load_full_weights(model: torch.nn.Module, model_dir: str) -> None:
    """Load the weights `save_pretrained` wrote to `model_dir` into `model` (tied weights are stored once).

    Read on the CPU: `load_state_dict` copies onto the parameters' device, and safetensors refuses accelerate's
    "cpu:0" device name."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(os.path.join(model_dir, "model.safetensors"), device="cpu"), strict=False)


class NamedAdapter:
    """One named LoRA adapter on the policy's PEFT model, the base shared and frozen.

    PEFT sets `requires_grad` only on the active adapter (its `set_adapter` turns it off for every inactive one),
    so this adapter's forward, backward and optimizer step must all run inside `scope()`, or its gradients come
    out None.
    """

    def __init__(self, peft_model, name: str):
        self.model = peft_model
        self.name = name

    @contextmanager
    def scope(self):
        with use_adapter(self.model, self.name):
            yield self.model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if f".{self.name}." in n]

    def load(self, adapter_dir: str) -> None:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        set_peft_model_state_dict(self.model, load_peft_weights(adapter_dir), adapter_name=self.name)


class AdapterPRM(NamedAdapter):
    """The PRM is the adapter `name` on the policy's PEFT model; the reference is the base, adapters off."""

    def __init__(self, peft_model, name: str = PRM_ADAPTER_NAME):
        super().__init__(peft_model, name)

    def prm_scope(self):
        return self.scope()

    @contextmanager
    def ref_scope(self):
        with use_adapter(self.model, None):
            yield self.model


PLACEMENTS = {"separate": SeparatePRM, "adapter": AdapterPRM}


class OnlinePRM:
    """Scores completions with implicit process rewards and learns from outcome labels.

    This is the training side, owned by `PRIMETrainer`; to load a saved PRM and score text afterwards, use
    `prime_trl.implicit_prm.ImplicitPRM`.

    `accelerator` supplies the device, autocast and the cross-process gradient sum. A separate PRM comes here
    prepared by the accelerator (DDP under `accelerate launch`), which all-reduces its gradients; an adapter PRM
    sits inside the policy, which the accelerator wrapped while the PRM adapter was frozen, so its gradients are
    summed here. The optimizer is a plain AdamW on purpose: an accelerate-wrapped optimizer skips `step()` on the
    non-sync micro-steps where TRL generates.
    """

    def __init__(
        self,
        placement,
        accelerator,
        beta: float,
        learning_rate: float,
        weight_decay: float,
        max_grad_norm: float,
        micro_batch_size: int,
        num_mini_batches: int,
        loss_type: str = "ce",
        num_generations: int | None = None,
        ref_type: str = "frozen",
        policy: torch.nn.Module | None = None,
    ):
        self.placement = placement
        self.ref_type, self.policy = ref_type, policy  # `prm_ref_type`; the policy serves the "policy" reference
        self.loss = PRM_LOSSES[loss_type]
        self.num_generations = num_generations
        self.accelerator = accelerator
        self.beta = beta
        self.max_grad_norm = max_grad_norm
        self.micro_batch_size = micro_batch_size
        self.num_mini_batches = num_mini_batches
        self.ddp = isinstance(placement.model, DistributedDataParallel)
        self.parameters = placement.trainable_parameters()
        if not self.parameters:
            raise ValueError("The PRM has no trainable parameters: nothing for PRIME's online update to learn.")
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.999)
        )
        # Constant learning rate, as the authors run it; a scheduler object keeps checkpoints uniform.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    @property
    def model(self) -> torch.nn.Module:
        return self.placement.model

    # -- forward passes -------------------------------------------------------------------------------
    @torch.no_grad()
    def _logps_no_grad(self, scope, batch: CompletionBatch) -> torch.Tensor:
        if len(batch) == 0:  # every group of this process was filtered out
            return batch.completion_mask.new_zeros(batch.completion_mask.shape, dtype=torch.float32)
        with scope() as module, self.accelerator.autocast():
            # DDP's forward may broadcast buffers (a collective); a pass with no backward needs none of it
            module = module.module if isinstance(module, DistributedDataParallel) else module
            return torch.cat([completion_logps(module, batch.rows(i)) for i in batch.split(self.micro_batch_size)])

    def reference_logps(self, batch: CompletionBatch) -> torch.Tensor:
        """log pi_ref of each completion token, (N, T), under this PRM's `prm_ref_type` (`PRM_REFERENCES`)."""
        return PRM_REFERENCES[self.ref_type](self, self.policy, batch)

    def ref_logps(self, batch: CompletionBatch) -> torch.Tensor:
        """log pi_ref of each completion token, (N, T)."""
        return self._logps_no_grad(self.placement.ref_scope, batch).float()

    def score(self, batch: CompletionBatch, ref_logps: torch.Tensor) -> torch.Tensor:
        """Implicit process rewards r_t of the current PRM, (N, T); no update."""
        prm_logps = self._logps_no_grad(self.placement.prm_scope, batch).float()
        return implicit_process_rewards(prm_logps, ref_logps, batch.completion_mask, self.beta)

    # -- online update ----------------------------------------------------------------------------------
    def update(
        self, batch: CompletionBatch, ref_logps: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One pass of PRIME's PRM update over this process's rows (paper Alg. 1 line 8).

        Args:
            batch: N local rows to learn from.
            ref_logps: (N, T) reference log-probs of those rows.
            labels: (N,) outcome labels in [0, 1] (BCE targets).

        Returns:
            rewards: (N, T) implicit process rewards from the forward pass each row's update used, i.e. before
                that mini-batch's optimizer step (the paper's "single forward").
            metrics: global `loss` (mean BCE over all processes' rows) and `grad_norm` (last mini-batch).

        The rows are split into `num_mini_batches` chunks per process, one optimizer step each. Every process
        takes the same number of steps, so their gradients can be summed across processes; each row's loss is
        divided by the global row count of its mini-batch, which makes the summed gradient that of the global
        mean loss. Under DDP every process also runs the same number of micro-batches (padding with zero-loss
        filler rows), because a backward through DDP is a collective.
        """
        rewards = torch.zeros_like(ref_logps)
        loss_sum = torch.zeros((), device=ref_logps.device)
        grad_norm = torch.zeros((), device=ref_logps.device)
        mini_batches = torch.arange(len(batch), device=ref_logps.device).tensor_split(self.num_mini_batches)
        global_rows, global_micro = self._global_counts(mini_batches)
        loss_scale = self.accelerator.num_processes if self.ddp else 1  # DDP averages gradients; we want the sum
        context = self.loss.prepare(self, batch, ref_logps, labels)
        with self.placement.prm_scope() as module:
            for mini_rows, num_global, num_micro in zip(mini_batches, global_rows, global_micro):
                if num_global == 0:
                    continue
                micro_rows = list(mini_rows.split(self.micro_batch_size)) if len(mini_rows) else []
                if self.ddp:
                    micro_rows += [None] * (num_micro - len(micro_rows))
                for i, rows in enumerate(micro_rows):
                    micro = batch.filler() if rows is None else batch.rows(rows)
                    # DDP decides at the forward whether the backward all-reduces: only at the mini-batch's last
                    syncs = not self.ddp or i == len(micro_rows) - 1
                    with nullcontext() if syncs else module.no_sync(), self.accelerator.autocast():
                        prm_logps = completion_logps(module, micro).float()
                    if rows is None:
                        (prm_logps.sum() * 0.0).backward()  # joins DDP's all-reduce with a zero gradient
                        continue
                    row_losses = self.loss.row_losses(
                        self, prm_logps, ref_logps[rows], micro, labels[rows], context, rows
                    )
                    (row_losses.sum() * (loss_scale / num_global)).backward()
                    loss_sum += row_losses.detach().sum()
                    rewards[rows] = implicit_process_rewards(
                        prm_logps.detach(), ref_logps[rows], micro.completion_mask, self.beta
                    )
                grad_norm = self._step()
        loss = self.accelerator.reduce(loss_sum, "sum") / max(sum(global_rows), 1)
        return rewards, {"loss": loss.item(), "grad_norm": float(grad_norm)}

    def _global_counts(self, mini_batches: list[torch.Tensor]) -> tuple[list[int], list[int]]:
        """Per mini-batch: rows summed over processes, and the most micro-batches any process has (one gather)."""
        local = torch.tensor(
            [[len(rows), -(-len(rows) // self.micro_batch_size)] for rows in mini_batches],
            device=self.accelerator.device,
        )  # (num_mini_batches, 2)
        counts = self.accelerator.gather(local.unsqueeze(0)) if self.accelerator.num_processes > 1 else local[None]
        return counts[..., 0].sum(0).tolist(), counts[..., 1].max(0).values.tolist()

    def _step(self) -> torch.Tensor:
        """Sum gradients over processes (unless DDP did), clip, take one AdamW step."""
        for p in self.parameters:
            if p.grad is None:  # a process with no rows this mini-batch still joins the all-reduce
                p.grad = torch.zeros_like(p)
        if self.accelerator.num_processes > 1 and not self.ddp:
            for bucket in _gradient_buckets(self.parameters):
                # one collective per bucket, not per parameter: what DDP's bucketing does for the policy
                summed = self.accelerator.reduce(torch.cat([p.grad.flatten() for p in bucket]), "sum")
                for p, grad in zip(bucket, summed.split([p.numel() for p in bucket])):
                    p.grad.copy_(grad.view_as(p))
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def step(self, mode: str, batch: CompletionBatch, ref_logps: torch.Tensor, labels: torch.Tensor):
        """Rewards (N, T) and update metrics for one generation batch under `prm_update` mode `mode`."""
        return UPDATE_MODES[mode](self, batch, ref_logps, labels)

    def learn(self, mode: str, batch: CompletionBatch, labels: torch.Tensor):
        """`step` on one generation batch with this PRM's own reference pass: rewards (N, T) and metrics."""
        return self.step(mode, batch, self.reference_logps(batch), labels)

    # -- persistence ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])



def _gradient_buckets(parameters, max_numel: int = 2**25) -> list[list[torch.nn.Parameter]]:
    """Group parameters of one dtype and device into buckets of at most ~`max_numel` gradient elements."""
    buckets, current, size = [], [], 0
    for p in parameters:
        if current and (size + p.numel() > max_numel or (p.dtype, p.device) != (current[0].dtype, current[0].device)):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += p.numel()
    return buckets + [current] if current else buckets


def _update_then_score(prm: OnlinePRM, batch, ref_logps, labels):
    # "before" (double forward): learn from this batch first, then score it with the updated PRM
    _, metrics = prm.update(batch, ref_logps, labels)
    return prm.score(batch, ref_logps), metrics


def _score_without_update(prm: OnlinePRM, batch, ref_logps, labels):
    return prm.score(batch, ref_logps), {}


def _score_during_update(prm: OnlinePRM, batch, ref_logps, labels):
    # "after" (single forward): the rewards of each row come from the forward pass its update uses
    return prm.update(batch, ref_logps, labels)


# `prm_update` modes, the one definition (PRIMEConfig's choices come from here).
UPDATE_MODES = {"after": _score_during_update, "before": _update_then_score, "none": _score_without_update}


# -- the PRM's loss (`prm_loss_type`) ------------------------------------------------------------------
class _CrossEntropyLoss:
    """PRIME's loss: BCE of sigmoid(r_phi(y)) against the outcome (paper Alg. 1 line 8)."""

    def prepare(self, prm: OnlinePRM, batch, ref_logps, labels):
        return None

    def row_losses(self, prm: OnlinePRM, prm_logps, ref_logps, micro, labels, context, rows):
        # L_CE = -[r_o log sigma(r_phi(y)) + (1 - r_o) log(1 - sigma(r_phi(y)))]
        return prm_ce_loss(prm_logps, ref_logps, micro.completion_mask, labels, prm.beta, reduction="none")


class _PairwiseDPOLoss:
    """veRL's pairwise DPO loss: each row against the detached rewards of its group's other side (paper App. C.2).

    The group's rewards come from a no-gradient pass of the PRM before the update (veRL's "reverse" pass), so
    this loss costs one more PRM forward per batch. A process's rows must hold whole groups (checked in config).
    """

    def prepare(self, prm: OnlinePRM, batch, ref_logps, labels):
        G = prm.num_generations
        prm_logps = prm._logps_no_grad(prm.placement.prm_scope, batch).float()
        rewards = sequence_implicit_rewards(prm_logps, ref_logps, batch.completion_mask, prm.beta)  # (N,)
        # every row sees the G rewards and labels of its own group: (N, G)
        return rewards.view(-1, G).repeat_interleave(G, 0), labels.view(-1, G).repeat_interleave(G, 0)

    def row_losses(self, prm: OnlinePRM, prm_logps, ref_logps, micro, labels, context, rows):
        group_rewards, group_labels = context
        return prm_dpo_loss(
            prm_logps, ref_logps, micro.completion_mask, labels, prm.beta, group_rewards[rows], group_labels[rows],
            reduction="none",
        )


# `prm_loss_type` choices, the one definition.
PRM_LOSSES = {"ce": _CrossEntropyLoss(), "dpo": _PairwiseDPOLoss()}


# -- the PRM's reference (`prm_ref_type`) --------------------------------------------------------------
def _frozen_reference(prm: OnlinePRM, policy, batch):
    return prm.ref_logps(batch)


def _policy_reference(prm: OnlinePRM, policy, batch):
    """The authors' ref_type "policy": log pi_ref = the policy's log-probs of its own samples, at temperature 1.

    The policy has not changed since it sampled, so it is scored once without gradients, by the same
    `completion_logps` (temperature 1, fp32 head) as the PRM: GRPO's own sampling-time log-probs are at the
    sampling temperature and from its bf16 head, and would put their rounding into the log-ratio.
    No reference model is held.
    """
    return prm._logps_no_grad(lambda: nullcontext(policy), batch).float()


# `prm_ref_type` choices, the one definition.
PRM_REFERENCES = {"frozen": _frozen_reference, "policy": _policy_reference}
