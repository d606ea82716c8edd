"""Test harness only: let `accelerate launch --use_deepspeed` run on a machine without a GPU.

accelerate 1.15 finds no backend for DeepSpeed without CUDA, so every rank reports num_processes=1 and
process_index=0 while DeepSpeed itself starts a 2-process gloo group. Reporting gloo / MULTI_CPU instead lets
accelerate switch to DEEPSPEED with the real world size, as on GPUs. Applied by the worker when
PRIME_TEST_CPU_DEEPSPEED=1, before any Accelerator exists.
"""

import os

import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType

_prepare_backend = PartialState._prepare_backend


def _prepare_backend_on_cpu(self, cpu=False, sagemaker_dp=False, backend=None):
    found, distributed_type = _prepare_backend(self, cpu, sagemaker_dp, backend)
    if found is None and not cpu and not torch.cuda.is_available() and int(os.environ.get("LOCAL_RANK", -1)) != -1:
        return "gloo", DistributedType.MULTI_CPU
    return found, distributed_type


def apply() -> None:
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        PartialState._prepare_backend = _prepare_backend_on_cpu
