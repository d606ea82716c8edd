"""Turn a GGUF checkpoint (llama.cpp's format) into a plain Hugging Face model directory that trains.

transformers reads a `.gguf` file (with the `gguf` package installed) and dequantizes its weights to
fp32, tokenizer and chat template included, but the model it returns keeps a GGUF "quantizer" marker:
`save_pretrained` refuses it and `Trainer` treats it as a quantized model that cannot be fine-tuned.
The weights are ordinary fp32 tensors by then, so dropping the marker is all it takes.

    from prime_trl.gguf_checkpoint import gguf_to_hf
    gguf_to_hf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")   # then PRIMETrainer(model="smollm2", ...)

A quantized GGUF (Q4_1, Q8_0, ...) gives the dequantized weights, not the original full-precision ones.
"""

from __future__ import annotations

import os


def drop_gguf_quantizer(model) -> None:
    """Remove the marker transformers leaves on a model loaded with `gguf_file=` (its weights are plain fp32)."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # else config.json says "gguf" and every reload looks quantized
    model.hf_quantizer = None
    model.is_quantized = False


def gguf_to_hf(gguf_path: str, out_dir: str) -> str:
    """Load `gguf_path` (model and tokenizer), save both to `out_dir` as a plain HF directory; returns `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isfile(gguf_path):
        raise FileNotFoundError(f"gguf_path {gguf_path!r}: no such file")
    directory, filename = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename)
    drop_gguf_quantizer(model)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
