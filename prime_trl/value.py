"""The learned value model of `advantage_estimator="ppo"`: where it lives, its optimizer, `predict()` and `update()`.

V(s_t) is a linear head on the last hidden state of a causal LM at the position that predicts completion token t
(the critic layout of veRL and TRL's PPO). Two placements (`VALUE_PLACEMENTS`), chosen like the PRM's:
- `SeparateValue`: a full copy of the policy's start of its own (without PEFT);
- `AdapterValue`: a third LoRA adapter on the policy's PEFT model (with PEFT), next to the policy's and the PRM's.
Its optimizer is its own plain AdamW over its own parameters (the adapter or the copy, plus the head), so its
gradients never mix with the policy's or the PRM's. The loss is `core.clipped_value_loss`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from prime_trl.core import clipped_value_loss, explained_variance
from prime_trl.prm import CompletionBatch, NamedAdapter, _gradient_buckets, load_full_weights

VALUE_ADAPTER_NAME = "value"
VALUE_STATE_FILE = "value_state.pt"
VALUE_HEAD_FILE = "value_head.pt"


def completion_hidden_states(model: torch.nn.Module, batch: CompletionBatch) -> torch.Tensor:
    """(N, T, H) last hidden states at the positions that predict the T completion tokens (state s_t before y_t)."""
    num_completion = batch.completion_mask.size(1)
    hidden = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        output_hidden_states=True,
        logits_to_keep=1,  # the LM head's logits are not needed
        use_cache=False,
    ).hidden_states[-1]  # (N, L, H)
    return hidden[:, -num_completion - 1 : -1]  # (N, T, H)


class SeparateValue:
    """The value model is a copy of the policy's start plus the head; all of it trains."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @contextmanager
    def scope(self):
        yield self.model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def save(self, output_dir: str) -> None:
        self.model.save_pretrained(output_dir)

    def load(self, value_dir: str) -> None:
        load_full_weights(self.model, value_dir)


class AdapterValue(NamedAdapter):
    """The value model is the adapter `name` on the policy's PEFT model plus the head (base shared, frozen)."""

    def __init__(self, peft_model, name: str = VALUE_ADAPTER_NAME):
        super().__init__(peft_model, name)

    def save(self, output_dir: str) -> None:
        pass  # the policy's save_pretrained already writes every adapter, this one into `value/`


VALUE_PLACEMENTS = {"separate": SeparateValue, "adapter": AdapterValue}


class ValueModel:
    """V(s_t) for PPO's GAE, trained on the GAE returns with the clipped value loss, one AdamW step per batch.

    Every process takes one step per generation batch. The loss of each process is its token sum divided by the
    global number of valid tokens, and the gradients are summed across processes, so the step is that of the
    global token-mean loss whatever the split of rows.
    """

    def __init__(
        self,
        placement,
        hidden_size: int,
        accelerator,
        learning_rate: float,
        weight_decay: float,
        max_grad_norm: float,
        clip_range: float,
        micro_batch_size: int,
    ):
        self.placement = placement
        self.accelerator = accelerator
        self.max_grad_norm = max_grad_norm
        self.clip_range = clip_range
        self.micro_batch_size = micro_batch_size
        # zero-initialised: V = 0 at the start (GAE then starts from the plain returns) and no RNG draw
        self.head = torch.nn.Linear(hidden_size, 1).to(accelerator.device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        with placement.scope():
            self.parameters = placement.trainable_parameters() + list(self.head.parameters())
        self.optimizer = torch.optim.AdamW(self.parameters, lr=learning_rate, weight_decay=weight_decay)

    def _values(self, module, batch: CompletionBatch) -> torch.Tensor:
        with self.accelerator.autocast():
            hidden = completion_hidden_states(module, batch)  # (N, T, H)
        return self.head(hidden.float()).squeeze(-1)  # (N, T)

    @torch.no_grad()
    def predict(self, batch: CompletionBatch) -> torch.Tensor:
        """V(s_t) of every completion token, (N, T), 0 on padding."""
        if len(batch) == 0:
            return batch.completion_mask.new_zeros(batch.completion_mask.shape, dtype=torch.float32)
        with self.placement.scope() as module:
            values = torch.cat([self._values(module, batch.rows(i)) for i in batch.split(self.micro_batch_size)])
        return values * batch.completion_mask

    def update(
        self, batch: CompletionBatch, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, float]:
        """One AdamW step on this process's rows; metrics over all processes.

        Args:
            batch: N local rows.
            old_values: (N, T) V_old from `predict` at rollout time.
            returns: (N, T) GAE value targets.
            mask: (N, T) tokens that enter the loss (filtered rows all 0).
        """
        num_tokens = self.accelerator.reduce(mask.sum().to(self.accelerator.device), "sum").clamp(min=1)
        loss_sum = torch.zeros((), device=self.accelerator.device)
        rows = [i for i in batch.split(self.micro_batch_size) if mask[i].any()]
        with self.placement.scope() as module:
            for i in rows:
                values = self._values(module, batch.rows(i))
                # sum over this micro-batch's tokens / global tokens: summed over processes, the global token-mean
                loss = clipped_value_loss(values, old_values[i], returns[i], mask[i], self.clip_range, "sum")
                (loss / num_tokens).backward()
                loss_sum += loss.detach()
            grad_norm = self._step()
        ev = self._global_explained_variance(old_values, returns, mask)
        loss = self.accelerator.reduce(loss_sum, "sum") / num_tokens
        return {"loss": loss.item(), "explained_variance": ev, "grad_norm": float(grad_norm)}

    def _step(self) -> torch.Tensor:
        for p in self.parameters:
            if p.grad is None:  # no rows here: still joins the gradient sum
                p.grad = torch.zeros_like(p)
        if self.accelerator.num_processes > 1:
            for bucket in _gradient_buckets(self.parameters):
                summed = self.accelerator.reduce(torch.cat([p.grad.flatten() for p in bucket]), "sum")
                for p, grad in zip(bucket, summed.split([p.numel() for p in bucket])):
                    p.grad.copy_(grad.view_as(p))
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _global_explained_variance(self, values, returns, mask) -> float:
        """Explained variance of the rollout-time values over all processes' tokens."""
        if self.accelerator.num_processes > 1:
            pad, gather = self.accelerator.pad_across_processes, self.accelerator.gather
            values, returns, mask = (gather(pad(t.float(), dim=1)) for t in (values, returns, mask))
        return float(explained_variance(values, returns, mask))

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, output_dir: str) -> None:
        """Weights for `from_pretrained` (separate) or PEFT (adapter), and the head, into `output_dir`."""
        os.makedirs(output_dir, exist_ok=True)
        self.placement.save(output_dir)
        torch.save(self.head.state_dict(), os.path.join(output_dir, VALUE_HEAD_FILE))

    def load(self, value_dir: str) -> None:
        if not os.path.isdir(value_dir):
            raise FileNotFoundError(f"Checkpoint has no value model at {value_dir}; it was not written with 'ppo'.")
        device = self.accelerator.device
        self.placement.load(value_dir)
        self.head.load_state_dict(torch.load(os.path.join(value_dir, VALUE_HEAD_FILE), map_location=device))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
