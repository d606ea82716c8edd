import os

import pytest
import torch


@pytest.fixture(scope="session")
def perturbed_prm_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with noise added to every weight: a PRM whose rewards are not 0 against the tiny model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = str(tmp_path_factory.mktemp("perturbed-prm"))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def prm_adapter_output_dir(tiny_model_dir, tmp_path_factory):
    """A trainer-like output dir whose `prm/` holds a LoRA adapter named "prm" on the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # init_lora_weights=False: B is random too, so the adapter changes the outputs from the start
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config, adapter_name="prm")
    out = str(tmp_path_factory.mktemp("adapter-run"))
    model.save_pretrained(out, selected_adapters=["prm"])
    assert os.path.exists(os.path.join(out, "prm", "adapter_config.json"))
    return out

