"""The converted SmolLM2 directory is the GGUF model: same logits, same tokenizer, no quantizer marker."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytestmark = pytest.mark.slow


def test_converted_directory_reloads_as_the_gguf_model(smollm2_gguf, smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = os.path.split(smollm2_gguf)
    gguf_model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename)
    gguf_tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(smollm2_dir), AutoTokenizer.from_pretrained(smollm2_dir)

    assert "quantization_config" not in json.load(open(os.path.join(smollm2_dir, "config.json")))
    assert getattr(model, "hf_quantizer", None) is None  # trainable: Trainer refuses a quantized model without PEFT
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    messages = [{"role": "user", "content": "What is 12 + 30?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    expected = gguf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)  # fmt: skip
    assert torch.equal(ids["input_ids"], expected["input_ids"])
    assert tokenizer.decode(ids["input_ids"][0]).endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, gguf_model(**ids).logits, rtol=0, atol=0)
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
