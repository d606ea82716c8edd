"""Where the PRM (and PPO's value model) come from, and which setups can hold them.

Checks run before any weights load, so a setup that cannot work fails with a clear error, not a hang or a
crash deep in training; model copies are loaded whole even where the policy's backend would shard them.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager

import torch
from trl.trainer.utils import create_model_from_path

from prime_trl.config import PRIMEConfig


def resolve_placement(requested: str | None, model, peft_config) -> str:
    is_peft = peft_config is not None or hasattr(model, "peft_config")
    placement = requested or ("adapter" if is_peft else "separate")
    if placement == "adapter" and not is_peft:
        raise ValueError("prm_placement='adapter' needs a PEFT policy: pass peft_config (or a PeftModel).")
    return placement


def is_data_parallel(accelerator) -> bool:
    """Plain multi-process data parallelism (DDP on CPUs, GPUs or other devices), not DeepSpeed or FSDP."""
    return accelerator.num_processes > 1 and accelerator.distributed_type.name.startswith("MULTI_")


def sharding_backend(accelerator) -> str | None:
    """'DeepSpeed ZeRO-3' or 'FSDP' where every parameter of the policy's model is sharded, else None."""
    kind, plugin = accelerator.distributed_type.name, accelerator.state.deepspeed_plugin
    if kind == "DEEPSPEED" and plugin is not None and plugin.zero_stage == 3:
        return "DeepSpeed ZeRO-3"
    return "FSDP" if kind == "FSDP" else None


def check_adapter_prm_unsharded(accelerator) -> None:
    """ZeRO-3 and FSDP shard every parameter of the policy's model, the PRM adapter's included, for the policy's
    engine to gather; the PRM's own optimizer cannot step such shards (a ZeRO-3 run of it hangs)."""
    backend = sharding_backend(accelerator)
    if backend:
        raise ValueError(
            f"prm_placement='adapter' does not work under {backend}, which shards "
            "the PRM adapter with the policy's base model. Use prm_placement='separate' (a replicated full PRM), "
            "or DDP / DeepSpeed ZeRO-2 for the adapter placement."
        )


def check_value_model_unsharded(accelerator) -> None:
    """The value model is replicated and stepped by its own optimizer, like the adapter PRM: ZeRO-3 and FSDP shard
    the policy's base (and any adapter on it) for the policy's engine alone, so PPO is refused there."""
    backend = sharding_backend(accelerator)
    if backend:
        raise ValueError(
            f"advantage_estimator='ppo' does not work under {backend}: its value "
            "model is replicated with an optimizer of its own. Use DDP or DeepSpeed ZeRO-2."
        )


def check_quantization_runs_here(quantization_config, model) -> None:
    """bitsandbytes' 4/8-bit layers need CUDA (on CPU they run only partly and break after an eval pass)."""
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        quantization_config = {"load_in_4bit": True}  # an already-quantized instance
    if quantization_config is None:
        return
    def wants(key):  # a BitsAndBytesConfig, or its dict form from model_init_kwargs / YAML
        if isinstance(quantization_config, dict):
            return quantization_config.get(key, False)
        return getattr(quantization_config, key, False)

    if not (wants("load_in_4bit") or wants("load_in_8bit")):
        return
    if not torch.cuda.is_available():
        raise ValueError(
            "quantization_config asks for a 4/8-bit base (QLoRA), which needs bitsandbytes on a CUDA GPU, and no "
            "CUDA device is available. Drop quantization_config to train LoRA adapters on a full-precision base."
        )
    try:
        import bitsandbytes  # noqa: F401  (availability check)
    except ImportError as err:
        raise ImportError("4/8-bit quantization needs bitsandbytes: pip install 'prime-trl[quant]'.") from err


def separate_prm_models(model, args: PRIMEConfig, prm_model, prm_ref_model, quantization_config):
    """The PRM (default: the policy's starting point) and its frozen reference (default: the PRM's start)."""
    if quantization_config is not None:
        raise ValueError(
            "A quantized PRM cannot be trained as a full model. Use peft_config with prm_placement='adapter' "
            "(QLoRA: policy and PRM are adapters on the shared 4-bit base)."
        )
    if prm_model is None:
        prm_model = whole_copy(args.prm_model_name_or_path or model, args)
    if args.prm_ref_type == "policy":
        if prm_ref_model is not None:
            raise ValueError(
                "prm_ref_type='policy' takes the policy as the PRM's reference; do not pass prm_ref_model."
            )
        return prm_model, None  # the policy's log-probs are the reference: no model to hold
    if prm_ref_model is None:
        source = args.prm_ref_model_name_or_path
        prm_ref_model = whole_copy(source, args) if source else copy.deepcopy(prm_model)
    return prm_model, prm_ref_model


def whole_copy(source, args: PRIMEConfig) -> torch.nn.Module:
    """A full, unpartitioned model loaded from a path or copied from an instance (the separate PRM, value model)."""
    if isinstance(source, str):
        init_kwargs = dict(args.model_init_kwargs or {})
        init_kwargs["device_map"] = None  # placed on the accelerator's device by the trainer
        with whole_weights():
            return create_model_from_path(source, **init_kwargs)
    if hasattr(source, "peft_config"):
        raise ValueError("For a PeftModel policy use prm_placement='adapter', or pass prm_model explicitly.")
    if any(hasattr(p, "ds_id") for p in source.parameters()):
        raise ValueError(
            "The model instance was built partitioned by DeepSpeed ZeRO-3 (zero.Init), so a full-weight PRM "
            "cannot be copied from it. Pass the policy as a path or hub id (the PRM is then loaded whole), "
            "or pass prm_model and prm_ref_model loaded outside ZeRO-3."
        )
    return copy.deepcopy(source)


@contextmanager
def whole_weights():
    """Load whole weights under ZeRO-3 and FSDP too. transformers would build the model partitioned (ZeRO-3's
    zero.Init) or, with FSDP's cpu_ram_efficient_loading, on the meta device outside local rank 0, for an engine
    to gather or broadcast; the separate PRM and its reference have no engine and stay replicated."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved_config = hf_deepspeed._hf_deepspeed_config_weak_ref  # what is_deepspeed_zero3_enabled() reads
    saved_env = os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING")  # what transformers' is_fsdp_enabled() reads
    hf_deepspeed.unset_hf_deepspeed_config()
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved_config
        if saved_env is None:
            del os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"]
        else:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = saved_env
