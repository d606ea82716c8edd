"""The demo's model: a small random Qwen2 and a digit-level BPE tokenizer, built locally."""

from __future__ import annotations

from prime_trl.tiny import build_model, build_tokenizer


def build_demo_model_and_tokenizer(
    corpus: list[str],
    vocab_size: int = 400,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    seed: int = 0,
):
    """A random Qwen2 and a BPE tokenizer with one token per digit, trained on `corpus`."""
    # The chat roles are in every sequence: let BPE merge them too.
    corpus = [*corpus, "user\nassistant\nsystem\n"]
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size, individual_digits=True)
    model = build_model(
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=max(1, num_heads // 2),
        intermediate_size=4 * hidden_size,
        max_positions=512,
        seed=seed,
    )
    return model, tokenizer
