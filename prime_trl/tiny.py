"""Small models and tokenizers built locally, for tests and the offline demo.

Nothing here downloads: the tokenizer is a byte-level BPE trained on a few strings with the
`tokenizers` library, the model is a randomly initialised Qwen2 or Llama. Saving both to a
directory lets the same path-based loading code that serves hub ids run offline.
"""

from __future__ import annotations

import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

DEFAULT_CORPUS = [
    "What is 12 + 30? The answer is 42.",
    "Step 1: 7 * 6 = 42. Step 2: 42 - 2 = 40. The answer is \\boxed{40}.",
    "def solve():\n    a, b = map(int, input().split())\n    print(a + b)\n",
    "```python\nprint(sum(map(int, input().split())))\n```",
    "Present the answer in LaTex format: \\boxed{Your answer}",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } \\frac \\sqrt x y z",
]

ARCHITECTURES = {"qwen2": Qwen2Config, "llama": LlamaConfig}


def build_tokenizer(
    corpus: list[str] | None = None, vocab_size: int = 320, individual_digits: bool = False
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus` and wrap it with a Qwen-style chat template.

    EOS is `<|im_end|>` (the end of an assistant turn), padding is left, as TRL expects.
    `individual_digits=True` splits every digit into its own token before BPE (as Qwen2 and
    Llama do); small models learn arithmetic far faster when "127" is "1","2","7" rather than
    whatever merges the corpus happened to produce.
    """
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if individual_digits
        else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or DEFAULT_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=4096,
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast,
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_positions: int = 1024,
    seed: int = 0,
    intermediate_size: int | None = None,
):
    """A randomly initialised causal LM whose vocabulary matches `tokenizer`.

    `intermediate_size` defaults to `2 * hidden_size`.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r} is not one of {sorted(ARCHITECTURES)}")
    import torch

    config = ARCHITECTURES[arch](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_model(
    out_dir: str,
    corpus: list[str] | None = None,
    vocab_size: int = 320,
    individual_digits: bool = False,
    **model_kwargs,
) -> str:
    """Build a tokenizer and model and save both to `out_dir`; returns `out_dir`."""
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size, individual_digits=individual_digits)
    model = build_model(tokenizer, **model_kwargs)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
