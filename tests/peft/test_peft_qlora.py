"""QLoRA: policy and PRM adapters on a 4-bit bitsandbytes base.

Without CUDA the trainer refuses a 4/8-bit base before loading anything. Measured on a CPU with
bitsandbytes 0.50.2 (AVX512-BF16): PRIME with the adapter PRM does train on the CPU backend, but about
7x slower per step than LoRA on the fp32 base, and one evaluation pass repacks the 4-bit weights so
that the next training step dies with "a view of a leaf Variable that requires grad is being used in
an in-place operation" (the eval-mode forward switches bitsandbytes to its packed CPU inference layout,
whose `result += bias` breaks autograd). The GPU test runs only where CUDA is (conftest skips `gpu`).
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from prime_trl import PRIMETrainer
from tests.trainer.helpers import cpu_config, parity_reward, toy_dataset

LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM")


def _nf4(compute_dtype=torch.bfloat16) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: QLoRA can run here")
@pytest.mark.parametrize(
    "where, quantization",
    [
        ("trainer", _nf4()),
        ("model_init_kwargs", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}),  # the YAML/CLI form
        ("model_init_kwargs", {"load_in_8bit": True}),
    ],
    ids=["4bit-trainer-arg", "4bit-init-kwargs-dict", "8bit-init-kwargs-dict"],
)
def test_kbit_base_without_cuda_fails_before_loading(tiny_model_dir, tmp_path, where, quantization):
    overrides = {"model_init_kwargs": {"quantization_config": quantization}} if where == "model_init_kwargs" else {}
    trainer_kwargs = {"quantization_config": quantization} if where == "trainer" else {}
    with pytest.raises(ValueError, match="CUDA") as error:
        PRIMETrainer(
            model=tiny_model_dir, reward_funcs=parity_reward, args=cpu_config(tmp_path, **overrides),
            train_dataset=toy_dataset(), peft_config=LoraConfig(**LORA), **trainer_kwargs,
        )
    assert "Drop quantization_config" in str(error.value)  # says what to do on CPU


@pytest.mark.gpu
def test_qlora_adapter_prm_trains_both_adapters_and_keeps_the_4bit_base(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from prime_trl.prm import CompletionBatch, completion_logps

    args = cpu_config(
        tmp_path, use_cpu=False, bf16=True, max_steps=2, accuracy_lower_bound=0.0, accuracy_upper_bound=1.0
    )
    trainer = PRIMETrainer(
        model=tiny_model_dir, reward_funcs=parity_reward, args=args, train_dataset=toy_dataset(),
        peft_config=LoraConfig(**LORA), quantization_config=_nf4(),
    )
    assert trainer.prm_placement == "adapter"
    assert getattr(trainer.model, "is_loaded_in_4bit", False) or trainer.model.get_base_model().is_loaded_in_4bit

    def group(name):
        return "policy" if ".default." in name else "prm" if ".prm." in name else "base"

    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    packed = [n for n, p in trainer.model.named_parameters() if p.dtype == torch.uint8]
    assert packed, "no 4-bit weights: the base was not quantized"
    trainer.train()

    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(start[n], p.detach())}
    assert any(group(n) == "policy" for n in moved)
    assert any(group(n) == "prm" for n in moved)
    assert [n for n in moved if group(n) == "base"] == []  # packed 4-bit weights and the rest of the base
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    assert torch.isfinite(torch.tensor(logs["prm/loss"]))

    # The reference is the 4-bit base with adapters off: equal to a freshly quantized copy.
    tokenizer = trainer.processing_class
    ids = tokenizer("What is 2 + 3? The answer is 5.<|im_end|>", return_tensors="pt")["input_ids"]
    device = trainer.accelerator.device
    batch = CompletionBatch(ids.to(device), torch.ones_like(ids).to(device), torch.ones_like(ids[:, 4:]).to(device))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=_nf4(), device_map={"": device})
    with torch.no_grad(), trainer.accelerator.autocast():
        expected = completion_logps(base, batch).float()
    torch.testing.assert_close(trainer.prm.ref_logps(batch), expected, rtol=0, atol=1e-3)
