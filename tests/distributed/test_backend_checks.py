"""Which PRM placements each accelerate backend accepts (FSDP cannot run here: accelerate needs GPUs for it)."""

from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from prime_trl.trainer import _check_adapter_prm_unsharded, _check_value_model_unsharded, _is_data_parallel


def _accelerator(kind, zero_stage=None, num_processes=2):
    plugin = SimpleNamespace(zero_stage=zero_stage) if zero_stage is not None else None
    return SimpleNamespace(distributed_type=kind, num_processes=num_processes,
                           state=SimpleNamespace(deepspeed_plugin=plugin))


@pytest.mark.parametrize("accelerator, name", [
    (_accelerator(DistributedType.FSDP), "FSDP"),
    (_accelerator(DistributedType.DEEPSPEED, zero_stage=3), "DeepSpeed ZeRO-3"),
])
def test_adapter_prm_is_refused_where_the_base_is_sharded(accelerator, name):
    with pytest.raises(ValueError, match=f"prm_placement='adapter' does not work under {name}"):
        _check_adapter_prm_unsharded(accelerator)


@pytest.mark.parametrize("accelerator", [
    _accelerator(DistributedType.NO, num_processes=1),
    _accelerator(DistributedType.MULTI_GPU),
    _accelerator(DistributedType.DEEPSPEED, zero_stage=2),
])
def test_adapter_prm_is_accepted_where_the_base_is_whole(accelerator):
    _check_adapter_prm_unsharded(accelerator)


def test_only_plain_data_parallelism_wraps_the_separate_prm():
    assert _is_data_parallel(_accelerator(DistributedType.MULTI_GPU))
    assert _is_data_parallel(_accelerator(DistributedType.MULTI_CPU))
    assert not _is_data_parallel(_accelerator(DistributedType.MULTI_CPU, num_processes=1))
    assert not _is_data_parallel(_accelerator(DistributedType.DEEPSPEED, zero_stage=2))
    assert not _is_data_parallel(_accelerator(DistributedType.FSDP))


@pytest.mark.parametrize("accelerator, name", [
    (_accelerator(DistributedType.FSDP), "FSDP"),
    (_accelerator(DistributedType.DEEPSPEED, zero_stage=3), "DeepSpeed ZeRO-3"),
])
def test_ppo_value_model_is_refused_where_the_base_is_sharded(accelerator, name):
    with pytest.raises(ValueError, match=f"advantage_estimator='ppo' does not work under {name}"):
        _check_value_model_unsharded(accelerator)
    _check_value_model_unsharded(_accelerator(DistributedType.DEEPSPEED, zero_stage=2))  # ZeRO-2 keeps it whole
