"""`prime_trl.generation`: pad fallback, prompt rendering, and HF generation on the tiny model."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prime_trl.generation import (
    generate,
    generate_ids,
    generate_texts,
    pad_token_id,
    render_prompt,
    render_prompts,
    sampling_kwargs,
)

PROMPTS = [[{"role": "user", "content": "What is 1 + 2?"}], "a plain string prompt"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_pad_token_id_falls_back_to_eos():
    assert pad_token_id(SimpleNamespace(pad_token_id=3, eos_token_id=7)) == 3
    assert pad_token_id(SimpleNamespace(pad_token_id=0, eos_token_id=7)) == 0  # id 0 is a real pad id
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=7)) == 7


def test_render_prompt_uses_the_chat_template_and_keeps_strings(tiny):
    _, tokenizer = tiny
    expected = tokenizer.apply_chat_template(PROMPTS[0], tokenize=False, add_generation_prompt=True)
    assert render_prompt(tokenizer, PROMPTS[0]) == expected
    assert render_prompt(tokenizer, tuple(PROMPTS[0])) == expected
    assert render_prompts(tokenizer, PROMPTS) == [expected, PROMPTS[1]]


def test_sampling_kwargs_greedy_and_sampling():
    assert sampling_kwargs(0.0)["do_sample"] is False and sampling_kwargs(0.0)["temperature"] is None
    assert sampling_kwargs(0.7, 0.9) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}


def test_generate_ids_stop_at_eos_and_restore_training_mode(tiny):
    model, tokenizer = tiny
    model.train()
    prompt_ids, completion_ids = generate_ids(model, tokenizer, PROMPTS, max_new_tokens=8)
    assert model.training
    assert prompt_ids[1] == tokenizer(PROMPTS[1], add_special_tokens=False)["input_ids"]
    for ids in completion_ids:
        assert 1 <= len(ids) <= 8
        assert tokenizer.eos_token_id not in ids[:-1]  # EOS only as the last token, when there is one
    # the same greedy completion, one prompt at a time without padding
    enc = tokenizer(render_prompt(tokenizer, PROMPTS[0]), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        alone = model.eval().generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=pad_token_id(tokenizer))
    alone = alone[0, enc["input_ids"].shape[1]:].tolist()
    assert completion_ids[0] == alone[: len(completion_ids[0])]


def test_generate_texts_shape_and_seeded_sampling(tiny):
    model, tokenizer = tiny
    torch.manual_seed(0)
    first = generate_texts(model, tokenizer, PROMPTS, num_samples=3, temperature=1.0, max_new_tokens=5,
                           batch_size=1, progress=False)
    torch.manual_seed(0)
    second = generate_texts(model, tokenizer, PROMPTS, num_samples=3, temperature=1.0, max_new_tokens=5,
                            batch_size=1, progress=False)
    assert [len(s) for s in first] == [3, 3] and first == second


def test_generate_from_a_path_matches_the_loaded_model(tiny, tiny_model_dir):
    model, tokenizer = tiny
    from_path = generate(tiny_model_dir, PROMPTS, max_new_tokens=5, backend="hf", progress=False)
    loaded = generate_texts(model, tokenizer, PROMPTS, max_new_tokens=5, progress=False)
    assert from_path == loaded
    with pytest.raises(ValueError, match="greedy"):
        generate(tiny_model_dir, PROMPTS, num_samples=2, temperature=0.0)
    with pytest.raises(ValueError, match="backend"):
        generate(tiny_model_dir, PROMPTS, backend="nope")
