"""`PRIMETrainer`: PRIME (Cui et al. 2025, arXiv 2502.01456, Alg. 1) on TRL's GRPOTrainer.

GRPO already samples `num_generations` completions per prompt, scores them with the reward functions
(gathered across processes) and applies a PPO-clip loss that accepts per-token advantages. PRIME replaces
what happens between scoring and the loss:

    outcome reward and PRM label -> accuracy filter on the label -> implicit PRM (score + online update on the
    label) -> advantage estimator on the outcome reward (RLOO returns and whitening by default; REINFORCE, GRPO,
    PPO with a value model: `prime_trl.estimators`)

All formulas are in `prime_trl.core`; the PRM's state is in `prime_trl.prm`. This file orchestrates.
"""

from __future__ import annotations

import copy
import logging
import os

import datasets
import torch
from transformers.trainer import PREFIX_CHECKPOINT_DIR, TRAINER_STATE_NAME
from transformers.trainer_utils import rotate_checkpoints
from trl import GRPOConfig, GRPOTrainer

from prime_trl.checkpoint import (
    PRM_STATE_FILE,
    STAGING_DIR,
    load_generation_state,
    load_sampling_state,
    publish,
    published_path,
    save_generation_state,
    save_sampling_state,
)
from prime_trl.config import PRIMEConfig, prime_config_from_grpo
from prime_trl.core import (
    accuracy_filter,
    outcome_scores,
    prm_pairwise_accuracy,
)
from prime_trl.estimators import (
    ADVANTAGE_ESTIMATORS,
    NEEDS_VALUE_MODEL,
    EstimatorInputs,
    preprocess_process_rewards,
)
from prime_trl.label_rule import resolve_label_rule
from prime_trl.placement import (
    check_adapter_prm_unsharded,
    check_quantization_runs_here,
    check_value_model_unsharded,
    is_data_parallel,
    resolve_placement,
    separate_prm_models,
    whole_copy,
)
from prime_trl.prm import PLACEMENTS, PRM_ADAPTER_NAME, CompletionBatch, OnlinePRM
from prime_trl.sampling import (
    DynamicSampler,
    PromptStream,
    Round,
    deal_rows,
    gather_rows,
    row_layouts,
    row_tensors,
    sampling_metrics,
    trim_padding,
)
from prime_trl.value import VALUE_ADAPTER_NAME, VALUE_PLACEMENTS, VALUE_STATE_FILE, ValueModel

PRM_DIR = "prm"
VALUE_DIR = "value"
logger = logging.getLogger(__name__)


class PRIMETrainer(GRPOTrainer):
    """Drop-in replacement for `GRPOTrainer` that trains with PRIME.

    Args are those of `GRPOTrainer`, with `args` a `PRIMEConfig` (a `GRPOConfig` is converted, keeping all its
    values, PRIME's fields at their defaults), plus:
        prm_model: optional PRM instance (placement "separate"); default: a copy of the policy's start.
        prm_ref_model: optional frozen reference for the PRM; default: a copy of the PRM's start.
    """

    _tag_names = ["trl", "prime"]
    _name = "PRIME"

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: PRIMEConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
        prm_model=None,
        prm_ref_model=None,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = PRIMEConfig(f"{str(name).split('/')[-1]}-PRIME")
        if not isinstance(args, PRIMEConfig):
            if not isinstance(args, GRPOConfig):
                raise TypeError(
                    f"PRIMETrainer needs args to be a PRIMEConfig or GRPOConfig, got {type(args).__name__}."
                )
            args = prime_config_from_grpo(args)
        check_quantization_runs_here(
            quantization_config or (args.model_init_kwargs or {}).get("quantization_config"), model
        )
        placement = resolve_placement(args.prm_placement, model, peft_config)
        if placement == "separate":
            # Copy the PRM from the policy *before* the parent wraps or patches the policy model.
            prm_model, prm_ref_model = separate_prm_models(
                model, args, prm_model, prm_ref_model, quantization_config
            )
        elif prm_model is not None or prm_ref_model is not None:
            raise ValueError("prm_model / prm_ref_model apply only to prm_placement='separate'.")
        # PPO's value model, like the PRM: a third adapter with PEFT, else a copy of the policy's start (made here).
        needs_value = args.advantage_estimator in NEEDS_VALUE_MODEL
        value_placement = resolve_placement(None, model, peft_config) if needs_value else None
        value_model = whole_copy(model, args) if value_placement == "separate" else None

        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            **kwargs,
        )
        self.prm_label_rule = resolve_label_rule(
            args.prm_label_funcs, args.prm_label_transform, self.reward_funcs, self.reward_func_names,
            self.reward_weights,
        )
        # Picked by default among several reward functions: say which, where a user sees it.
        ambiguous = args.prm_label_funcs is None and len(self.reward_funcs) > 1
        (logger.warning if ambiguous else logger.info)(self.prm_label_rule.describe())
        self.prm_placement = placement
        self.prm = OnlinePRM(
            self._build_placement(placement, prm_model, prm_ref_model),
            self.accelerator,
            beta=args.prm_beta,
            learning_rate=args.prm_learning_rate,
            weight_decay=args.prm_weight_decay,
            max_grad_norm=args.prm_max_grad_norm,
            micro_batch_size=args.prm_micro_batch_size or args.per_device_train_batch_size,
            num_mini_batches=args.prm_num_mini_batches,
            loss_type=args.prm_loss_type,
            num_generations=self.num_generations,
            ref_type=args.prm_ref_type,
            policy=self.model,
        )
        self.value = self._build_value_model(value_placement, value_model) if value_placement else None
        # Completions generated for training, over all processes and dynamic sampling's extra rounds: the x-axis of
        # a sample-efficiency curve. Saved in checkpoints with the generation state, so a resumed run counts on.
        self.num_completions_sampled = 0
        self.dynamic_sampler = None
        if args.dynamic_sampling and train_dataset is not None:
            self.dynamic_sampler = self._build_dynamic_sampler()

    @property
    def prm_in_use(self) -> bool:
        """False for outcome-only RLOO with a frozen PRM (process_reward_coef=0, prm_update='none'): no PRM pass."""
        return self.args.process_reward_coef != 0 or self.args.prm_update != "none"

    @property
    def prm_model(self) -> torch.nn.Module:
        """The PRM's module: the separate model, or the policy's PEFT model carrying the "prm" adapter."""
        return self.prm.model

    def _build_placement(self, placement: str, prm_model, prm_ref_model):
        if placement == "adapter":
            if not hasattr(self.model, "peft_config"):
                raise ValueError("prm_placement='adapter' needs a PEFT policy: pass peft_config (or a PeftModel).")
            check_adapter_prm_unsharded(self.accelerator)
            # Added after the parent's __init__, frozen and inactive: the policy optimizer and DDP never see it.
            prm_lora = copy.deepcopy(self.model.peft_config[self.model.active_adapter])
            prm_lora.inference_mode = False
            self.model.add_adapter(PRM_ADAPTER_NAME, prm_lora)
            return PLACEMENTS["adapter"](self.model, PRM_ADAPTER_NAME)
        device = self.accelerator.device
        # AdamW steps of ~lr (1e-6) vanish on bf16 weights (spacing ~1e-4 near 0.02): keep fp32 master weights;
        # the forward passes still run in bf16 under accelerator.autocast(), as the authors' FSDP setup does.
        prm_model = prm_model.float()
        if self.args.gradient_checkpointing:
            prm_model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs or {"use_reentrant": False}
            )
        prm_model = prm_model.to(device).train()
        if prm_ref_model is not None:
            # The reference in the PRM's fp32 too (twice a bf16 copy's memory): a bf16-loaded copy of the same
            # weights computes other log-probs (~2e-3 per token, a first step's signal), so r_t would not start
            # at 0. A quantized reference someone passed in cannot be upcast and stays as it is.
            if not getattr(prm_ref_model, "is_quantized", False):
                prm_ref_model = prm_ref_model.float()
            prm_ref_model = prm_ref_model.to(device)
        if is_data_parallel(self.accelerator):
            # DDP, like the policy: gradients all-reduced in buckets overlapping the backward. Under DeepSpeed or
            # FSDP the accelerator's one engine is the policy's (a second would take over its backward), so the PRM
            # stays replicated there.
            prm_model = self.accelerator.prepare_model(prm_model)
        return PLACEMENTS["separate"](prm_model, prm_ref_model)

    def _build_value_model(self, placement: str, value_model) -> ValueModel:
        """PPO's value model: an adapter of the policy's PEFT model, or the separate copy, with its own optimizer."""
        check_value_model_unsharded(self.accelerator)
        if placement == "adapter":
            # Added after the parent's __init__ like the PRM adapter: the policy optimizer and DDP never see it.
            value_lora = copy.deepcopy(self.model.peft_config[self.model.active_adapter])
            value_lora.inference_mode = False
            self.model.add_adapter(VALUE_ADAPTER_NAME, value_lora)
            located = VALUE_PLACEMENTS["adapter"](self.model, VALUE_ADAPTER_NAME)
        else:
            # fp32 master weights, as for the separate PRM; replicated, its gradients summed by ValueModel
            located = VALUE_PLACEMENTS["separate"](value_model.float().to(self.accelerator.device).train())
        return ValueModel(
            located,
            located.model.config.hidden_size,
            self.accelerator,
            learning_rate=self.args.value_learning_rate,
            weight_decay=self.args.value_weight_decay,
            max_grad_norm=self.args.value_max_grad_norm,
            clip_range=self.args.value_clip_range,
            micro_batch_size=self.args.prm_micro_batch_size or self.args.per_device_train_batch_size,
        )

    # -- PRIME: rewards -------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # GRPO computes the gathered (B_global, num_reward_funcs) rewards inside `_generate_and_score_completions`
        # and returns none of them: hand them over to our override of that method, which passes them on.
        self._outcome_rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._outcome_rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self.model.training and self.args.dynamic_sampling:
            output, rewards_per_func = self._sample_informative_groups()  # its own prompts, same data order
            if output["completion_ids"].size(0) == 0:  # rounds exhausted without one usable group: skip the step
                return output
        else:
            output = super()._generate_and_score_completions(inputs)
            rewards_per_func, self._outcome_rewards_per_func = self._outcome_rewards_per_func, None
            if self.model.training:
                self.num_completions_sampled += self.args.generation_batch_size  # every process's rows
        if not self.model.training:  # evaluation also comes through here: no PRM update, GRPO advantages
            return output
        return self._apply_prime(output, rewards_per_func)

    def _apply_prime(self, output: dict, rewards_per_func: torch.Tensor) -> dict:
        """Replace GRPO's (B,) advantages by PRIME's per-token (B, T) advantages and update the PRM.

        `rewards_per_func`: (B_global, num_reward_funcs) rewards gathered across processes, NaN for None.
        """
        G = self.num_generations
        completion_mask = output["completion_mask"]  # (B_local, T)
        num_local = completion_mask.size(0)
        local = slice(self.accelerator.process_index * num_local, (self.accelerator.process_index + 1) * num_local)

        # 1. Outcome reward r_o (GRPO's weighted sum, any range) for the advantage; the PRM's label in [0, 1] by
        # the `prm_label_funcs` rule. Both (B_global,), NaN where nothing scored the row.
        outcome = outcome_scores(rewards_per_func, self.reward_weights)
        labels = self.prm_label_rule(rewards_per_func, self.reward_weights)

        # 2. Accuracy filter on the label (correctness, as the authors' `acc`): whole groups whose mean lies in
        # [low, high]; a group with a row without a label is dropped (the outcome is NaN only where the label is).
        keep_groups = self._informative_groups(labels)  # (P_global,)
        keep_rows = keep_groups.repeat_interleave(G)  # (B_global,)
        label_mean = labels.nanmean()
        # NaN rows sit in dropped groups, masked out of every loss; 0 keeps NaN out of the arithmetic.
        outcome, labels = outcome.nan_to_num(0.0), labels.nan_to_num(0.0)

        # 3. Implicit PRM on this process's kept rows: reference pass, then score and/or update.
        loss_mask = completion_mask if "tool_mask" not in output else completion_mask * output["tool_mask"]
        batch = CompletionBatch(
            torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
            torch.cat([output["prompt_mask"], completion_mask], dim=1),
            completion_mask,
        )
        process_rewards = torch.zeros_like(completion_mask, dtype=torch.float32)  # (B_local, T)
        prm_metrics = {}
        if self.prm_in_use:
            kept_local = keep_rows[local].nonzero().squeeze(1)
            kept_batch = batch.rows(kept_local)
            process_rewards[kept_local], prm_metrics = self.prm.learn(
                self.args.prm_update, kept_batch, labels[local][kept_local]
            )

        # 4. Advantages over the global batch, so they do not depend on how rows are split across processes.
        loss_mask = loss_mask * keep_rows[local].unsqueeze(1)  # masked, never dropped: the buffer splits equal chunks
        rewards_g, mask_g = self._gather_padded(process_rewards), self._gather_padded(loss_mask.float())
        advantages = self._token_advantages(rewards_g, outcome, mask_g, batch)
        # GRPO's completions table keeps one advantage per row of the global batch (a deque of that length):
        # show PRIME's at the first completion token, the whitened return of the whole response.
        self._logs["advantages"].extend(advantages[:, 0].tolist())

        # 5. Hand the per-token advantages and the loss mask to GRPO's PPO-clip loss.
        output["advantages"] = advantages[local, : completion_mask.size(1)]
        output["tool_mask"] = loss_mask  # GRPO's loss-only mask: filtered rows leave the loss, not the forward
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        self._log_prime_metrics(prm_metrics, rewards_g, labels, mask_g, keep_rows, keep_groups)
        self._metrics["train"]["prm/label_mean"].append(label_mean.item())
        return output

    def _token_advantages(self, process_rewards, scores, mask, batch: CompletionBatch | None = None):
        """(B_global, T) advantages: preprocess process rewards, then the configured estimator (`ADVANTAGE_ESTIMATORS`).

        With a value model ("ppo"), `batch` (this process's rows) gets V(s_t) for GAE and the value update."""
        args = self.args
        process_rewards = preprocess_process_rewards(
            process_rewards, mask, args.process_credit_assignment, args.process_reward_norm, args.min_form_temperature
        )
        values_local = self.value.predict(batch) if self.value is not None else None  # (B_local, T_local)
        values = self._gather_padded(values_local) if values_local is not None else None  # (B_global, T)
        estimate = ADVANTAGE_ESTIMATORS[args.advantage_estimator](
            EstimatorInputs(process_rewards, scores, mask, self.num_generations, values), args
        )
        if self.value is not None:
            self._update_value_model(batch, values_local, estimate.value_targets, mask)
        return estimate.advantages

    def _update_value_model(self, batch: CompletionBatch, old_values, value_targets, mask) -> None:
        """Fit V to this batch's GAE returns (the value loss of PPO), on this process's rows; log it."""
        num_local, num_completion = batch.completion_mask.shape
        local = slice(self.accelerator.process_index * num_local, (self.accelerator.process_index + 1) * num_local)
        metrics = self.value.update(
            batch, old_values, value_targets[local, :num_completion], mask[local, :num_completion]
        )
        for name, value in metrics.items():
            self._metrics["train"][f"value/{name}"].append(value)

    def _gather_padded(self, tensor: torch.Tensor) -> torch.Tensor:
        """(B_local, T_local) -> (B_global, T_max): completions have different lengths on each process."""
        return self.accelerator.gather(self.accelerator.pad_across_processes(tensor, dim=1, pad_index=0))

    def _log_prime_metrics(self, prm_metrics, process_rewards, scores, mask, keep_rows, keep_groups):
        metrics = self._metrics["train"]
        metrics["filter/kept_fraction"].append(keep_groups.float().mean().item())
        for name, value in prm_metrics.items():
            metrics[f"prm/{name}"].append(value)
        if self.args.prm_update != "none":
            metrics["prm/learning_rate"].append(self.prm.scheduler.get_last_lr()[0])
        if keep_rows.any() and self.prm_in_use:
            rows = keep_rows.nonzero().squeeze(1)  # whole groups, still contiguous
            kept_mask = mask[rows]
            metrics["prm/process_reward_mean"].append(
                ((process_rewards[rows] * kept_mask).sum() / kept_mask.sum().clamp(min=1)).item()
            )
            metrics["prm/accuracy"].append(
                float(prm_pairwise_accuracy(process_rewards[rows], scores[rows], kept_mask, self.num_generations))
            )

    # -- dynamic sampling: train only on informative groups (prime_trl.sampling) -------------------------------
    def _build_dynamic_sampler(self) -> DynamicSampler:
        dataset = self.train_dataset
        if dataset is None or isinstance(dataset, (torch.utils.data.IterableDataset, datasets.IterableDataset)):
            raise ValueError("dynamic_sampling draws further prompts by index, so it needs a map-style "
                             "train_dataset (not an IterableDataset); set dynamic_sampling=False to stream.")
        if isinstance(dataset, datasets.Dataset):
            dataset = self._remove_unused_columns(dataset, description="training")  # as the dataloader does
        self._dynamic_rows = dataset
        num_processes, spg = self.accelerator.num_processes, self.args.steps_per_generation
        if num_processes > 1 and spg % self.args.gradient_accumulation_steps:
            # a skipped generation batch must cover whole accumulation windows, or DDP's all-reduce would go unmatched
            raise ValueError(
                f"dynamic_sampling across processes needs steps_per_generation ({spg}) to be a multiple of "
                f"gradient_accumulation_steps ({self.args.gradient_accumulation_steps})."
            )
        layouts = row_layouts(
            self._tokenizer.pad_token_id, self.vllm_importance_sampling_mode.startswith("sequence")
        )
        return DynamicSampler(
            PromptStream(len(dataset), self.args.seed, self.shuffle_dataset),
            num_prompts=self.args.generation_batch_size // self.num_generations,
            num_generations=self.num_generations,
            max_rounds=self.args.max_sampling_rounds,
            rows_multiple=num_processes * spg,
            layouts=layouts,
        )

    def _sample_informative_groups(self) -> tuple[dict, torch.Tensor]:
        """This process's share of a generation batch built from informative groups only, and the gathered
        (B_trained, num_reward_funcs) rewards of all its rows."""
        if self.dynamic_sampler is None:
            self.dynamic_sampler = self._build_dynamic_sampler()
        sampler, acc = self.dynamic_sampler, self.accelerator
        sampled = sampler.sample(self._sample_round)
        if sampled.exhausted and acc.is_main_process:
            logger.warning(
                f"dynamic_sampling: {sampled.num_rounds} rounds (max_sampling_rounds) found {sampled.num_informative} "
                f"of the {sampled.num_wanted} informative groups a batch needs; training on {sampled.num_trained}."
            )
        self.num_completions_sampled += sampled.num_prompts_sampled * self.num_generations  # every round's
        for name, value in sampling_metrics(sampled).items():
            self._metrics["train"][name].append(value)
        local = deal_rows(sampled.batch, acc.process_index, acc.num_processes)
        return trim_padding(local, sampler.layouts, self.pad_to_multiple_of), sampled.rewards

    def _sample_round(self, prompts: list[int]) -> Round:
        """Generate and score G completions of each prompt (GRPO), this process taking its share of the rows."""
        rows = [index for index in prompts for _ in range(self.num_generations)]
        share = len(rows) // self.accelerator.num_processes
        start = self.accelerator.process_index * share
        inputs = [self._dynamic_rows[i] for i in rows[start : start + share]]
        output = row_tensors(super()._generate_and_score_completions(inputs), self.dynamic_sampler.layouts)
        rewards, self._outcome_rewards_per_func = self._outcome_rewards_per_func, None  # gathered (B_round, F)
        return Round(gather_rows(output, self.dynamic_sampler.layouts, self.accelerator), rewards,
                     self._informative_groups(self.prm_label_rule(rewards, self.reward_weights)), prompts)

    def _informative_groups(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) PRM labels, NaN where unscorable -> (P,) bool: the groups PRIME's accuracy filter keeps."""
        low, high = self.args.accuracy_lower_bound, self.args.accuracy_upper_bound
        return accuracy_filter(labels, self.num_generations, low, high)

    def training_step(self, model, inputs, num_items_in_batch):
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        except _NoRowsToTrain:  # every process skips the same micro-steps, so no collective goes unmatched
            self._step += 1  # GRPO's micro-step counter, which its training_step advances after the loss
            return torch.zeros((), device=self.accelerator.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.model.training and inputs["completion_ids"].size(0) == 0:
            raise _NoRowsToTrain  # dynamic sampling held no usable group: no forward, no backward
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    # -- saving and resuming -----------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the policy as GRPO does, and the PRM to `<output_dir>/prm` (loadable with `from_pretrained`)."""
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        # A PEFT policy's save_pretrained already writes every adapter, the PRM's into `prm/`.
        if self.prm_placement == "separate" and self.args.should_save:
            prm_dir = os.path.join(output_dir, PRM_DIR)
            self.accelerator.unwrap_model(self.prm.model).save_pretrained(prm_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(prm_dir)
        self._save_value_model(output_dir)

    def _save_value_model(self, output_dir: str) -> None:
        """PPO's value model into `<output_dir>/value` (the adapter itself is written by the policy's PEFT save)."""
        if self.value is not None and self.args.should_save:
            self.value.save(os.path.join(output_dir, VALUE_DIR))

    def _save_optimizer_and_scheduler(self, output_dir):
        """The parent's, plus the value model's optimizer (the PRM's is saved with the generation state)."""
        super()._save_optimizer_and_scheduler(output_dir)
        if self.value is not None and self.args.should_save:
            torch.save(self.value.state_dict(), os.path.join(output_dir, VALUE_STATE_FILE))

    def _save_checkpoint(self, model, trial):
        """GRPO's checkpoint plus the PRM's optimizer and GRPO's generation buffer, published atomically.

        Every rank takes the same steps (the paths it records are the same); rank 0 writes shared files and
        publishes, the others wait at the barriers."""
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_DIR)
        staged = os.path.join(staging_root, name)
        self._checkpoint_root = staging_root  # the parent writes into <run_dir>/.staging/checkpoint-N
        try:
            super()._save_checkpoint(model, trial)
            os.makedirs(staged, exist_ok=True)
            if not self.args.save_only_model:
                save_generation_state(staged, self.accelerator.process_index, self._step, self._buffered_inputs,
                                      self.num_completions_sampled)  # fmt: skip
                if self.dynamic_sampler is not None:
                    save_sampling_state(staged, self.accelerator.process_index, self.dynamic_sampler.state_dict())
                if self.args.should_save:
                    torch.save(self.prm.state_dict(), os.path.join(staged, PRM_STATE_FILE))
        finally:
            self._checkpoint_root = None
        # The parent recorded the best checkpoint under the staging folder: record, and save, where it is published.
        self.state.best_model_checkpoint = published_path(self.state.best_model_checkpoint, staging_root, run_dir)
        if self.args.should_save:
            self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish(staged, os.path.join(run_dir, name))
            if not os.listdir(staging_root):
                os.rmdir(staging_root)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()

    def _get_output_dir(self, trial) -> str:
        return getattr(self, "_checkpoint_root", None) or super()._get_output_dir(trial)

    def _load_best_model(self) -> None:
        """`load_best_model_at_end`: the policy as the Trainer loads it, and the PRM saved beside it."""
        super()._load_best_model()
        self._load_prm_weights(os.path.join(self.state.best_model_checkpoint, PRM_DIR))

    def _load_optimizer_and_scheduler(self, checkpoint):
        """Resume: the parent's optimizer and scheduler, then the PRM and the unspent generation batch."""
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        self._load_prm_weights(os.path.join(checkpoint, PRM_DIR))
        state_path = os.path.join(checkpoint, PRM_STATE_FILE)
        if os.path.exists(state_path):
            self.prm.load_state_dict(torch.load(state_path, map_location=self.accelerator.device, weights_only=True))
        self._load_value_model(checkpoint)
        generation = load_generation_state(checkpoint, self.accelerator.process_index, self.accelerator.device)
        if generation is not None:
            self._step, self._buffered_inputs, self.num_completions_sampled = generation
        sampling = load_sampling_state(checkpoint, self.accelerator.process_index)
        if sampling is not None and self.dynamic_sampler is not None:
            self.dynamic_sampler.load_state_dict(sampling)

    def _load_value_model(self, checkpoint: str) -> None:
        if self.value is None:
            return
        self.value.load(os.path.join(checkpoint, VALUE_DIR))
        state = torch.load(os.path.join(checkpoint, VALUE_STATE_FILE), map_location=self.accelerator.device)
        self.value.load_state_dict(state)

    def _load_prm_weights(self, prm_dir: str) -> None:
        if not os.path.isdir(prm_dir):
            raise FileNotFoundError(f"Checkpoint has no PRM at {prm_dir}; it was not written by PRIMETrainer.")
        self.prm.placement.load(prm_dir)


class _NoRowsToTrain(Exception):
    """Raised by compute_loss on a micro-batch without rows; training_step skips that micro-step."""
