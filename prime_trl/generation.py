"""Generation from a policy, and the prompt rendering that goes with it: one copy for every caller.

- `pad_token_id(tokenizer)`: the pad id, falling back to EOS for tokenizers that have none (Qwen base, GPT-2).
- `render_prompt(tokenizer, prompt)`: a message list through the chat template with the generation prompt,
  exactly as GRPO renders its prompts; a string stays as is. `render_prompts` for a list.
- `sampling_kwargs(temperature, top_p)`: `model.generate` keywords: temperature > 0 samples (plain sampling,
  no top-k, as RL rollouts do), temperature 0 is greedy decoding.
- `generate_ids(model, tokenizer, prompts, ...)`: one left-padded `model.generate` call on a loaded model;
  returns the prompt ids and the completion ids (through the first EOS), for callers that score tokens.
- `generate_texts(model, tokenizer, prompts, ...)`: batched `model.generate` on a loaded model; returns the
  decoded completions (special tokens removed), (P, n).
- `generate(model_path, prompts, ..., backend="auto")`: the same from a checkpoint path with the HF backend or
  vLLM (`GENERATORS`; "auto" picks vLLM when it is installed and a GPU is visible).

torch, transformers and vLLM are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, or its EOS id when it has no pad token (generate then pads with EOS)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def render_prompt(tokenizer, prompt) -> str:
    """A message list rendered with the tokenizer's chat template and the generation prompt; a string as is."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def render_prompts(tokenizer, prompts: Sequence) -> list[str]:
    """`render_prompt` of each prompt."""
    return [render_prompt(tokenizer, p) for p in prompts]


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict:
    """`model.generate` keywords: sampling at `temperature` with nucleus `top_p` and no top-k, or greedy.

    Greedy sets temperature/top_p/top_k to None, which silences the "temperature is set but do_sample=False"
    warnings a model's own generation_config would otherwise cause.
    """
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def _generate_batch(model, tokenizer, texts: Sequence[str], max_new_tokens: int, temperature: float,
                    top_p: float, num_samples: int):
    """One left-padded `model.generate` call on rendered prompts, in eval mode (the mode is restored after).

    Returns the encoded prompts and the generated ids (b * num_samples, new): the `num_samples` rows of a
    prompt are contiguous, padded with `pad_token_id(tokenizer)` after EOS.
    """
    import torch

    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left")
    enc = enc.to(model.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=num_samples,
                                 pad_token_id=pad_token_id(tokenizer), **sampling_kwargs(temperature, top_p))
    finally:
        model.train(was_training)
    return enc, out[:, enc["input_ids"].shape[1]:]  # (b * num_samples, new)


def generate_ids(model, tokenizer, prompts: Sequence, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids and completion ids of one completion per prompt, from a loaded model in one batch.

    A completion keeps its first EOS (a scored token in training) and drops what follows it (only padding,
    since generate pads after EOS). The prompt ids are the rendered prompt's, without padding.
    """
    texts = render_prompts(tokenizer, prompts)
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    _, out = _generate_batch(model, tokenizer, texts, max_new_tokens, temperature, top_p, num_samples=1)
    completion_ids = []
    for row in out.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        completion_ids.append(row)
    return prompt_ids, completion_ids


def generate_texts(model, tokenizer, prompts: Sequence, num_samples: int = 1, temperature: float = 0.0,
                   top_p: float = 1.0, max_new_tokens: int = 1024, batch_size: int = 8, progress: bool = True,
                   desc: str = "generate") -> list[list[str]]:
    """`num_samples` decoded completions (special tokens removed) for each prompt, `batch_size` prompts a call.

    Returns (P, num_samples) strings. Seed torch yourself for reproducible sampling.
    """
    from tqdm.auto import tqdm

    texts = render_prompts(tokenizer, prompts)
    completions: list[list[str]] = []
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not progress):
        _, out = _generate_batch(model, tokenizer, texts[start:start + batch_size], max_new_tokens, temperature,
                                 top_p, num_samples)
        decoded = tokenizer.batch_decode(out, skip_special_tokens=True)
        completions += [decoded[i:i + num_samples] for i in range(0, len(decoded), num_samples)]
    return completions


# ---------------------------------------------------------------------------------------------
# Backends for `generate` (from a checkpoint path)
# ---------------------------------------------------------------------------------------------


def _generate_hf(model_path: str, prompts: list, num_samples: int, temperature: float, top_p: float,
                 max_new_tokens: int, batch_size: int, seed: int, model=None, tokenizer=None,
                 progress: bool = True) -> list[list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path)
    model = model or AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
    torch.manual_seed(seed)
    return generate_texts(model, tokenizer, prompts, num_samples, temperature, top_p, max_new_tokens, batch_size,
                          progress)


def _generate_vllm(model_path: str, prompts: list, num_samples: int, temperature: float, top_p: float,
                   max_new_tokens: int, batch_size: int, seed: int, model=None, tokenizer=None,
                   progress: bool = True) -> list[list[str]]:
    from vllm import LLM, SamplingParams  # heavy and optional: imported only here

    llm = LLM(model=model_path, seed=seed)
    params = SamplingParams(n=num_samples, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                            max_tokens=max_new_tokens, seed=seed)
    outputs = llm.generate(render_prompts(llm.get_tokenizer(), prompts), params, use_tqdm=progress)
    return [[o.text for o in out.outputs] for out in outputs]


GENERATORS = {"hf": _generate_hf, "vllm": _generate_vllm}


def resolve_backend(backend: str) -> str:
    """"auto" is vLLM when it is installed and a GPU is visible, else HF generate."""
    if backend != "auto":
        if backend not in GENERATORS:
            raise ValueError(f"backend must be 'auto' or one of {sorted(GENERATORS)}, got {backend!r}")
        return backend
    import importlib.util

    import torch

    return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"


def generate(
    model_path: str,
    prompts: list,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    seed: int = 0,
    backend: str = "auto",
    model=None,
    tokenizer=None,
    progress: bool = True,
) -> list[list[str]]:
    """`num_samples` completions (text, special tokens removed) for each prompt: (P, n).

    temperature 0 is greedy decoding, the paper's evaluation decoding, which only makes sense with one sample.
    A loaded `model`/`tokenizer` may be passed to the HF backend instead of loading `model_path`.
    """
    if temperature <= 0 and num_samples > 1:
        raise ValueError(
            "greedy decoding (temperature 0) gives identical samples; set temperature > 0 for num_samples > 1"
        )
    backend = resolve_backend(backend)
    return GENERATORS[backend](model_path, prompts, num_samples, temperature, top_p, max_new_tokens, batch_size,
                               seed, model=model, tokenizer=tokenizer, progress=progress)
