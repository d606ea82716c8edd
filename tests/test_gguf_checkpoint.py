"""`prime_trl.gguf_checkpoint` without a GGUF file: the marker it drops and the error for a missing file.

The conversion of a real GGUF checkpoint is tested in tests/real/test_gguf_conversion.py.
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

from prime_trl.gguf_checkpoint import drop_gguf_quantizer, gguf_to_hf


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        gguf_to_hf(str(tmp_path / "nope.gguf"), str(tmp_path / "out"))


def test_dropping_the_marker_lets_the_model_save_as_a_plain_checkpoint(tiny_model_dir, tmp_path):
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
    from transformers.utils.quantization_config import GgufConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # What from_pretrained(gguf_file=...) leaves on a model whose weights it has already dequantized.
    model.config.quantization_config = GgufConfig()
    model.is_quantized = True
    model.hf_quantizer = GgufHfQuantizer(model.config.quantization_config)
    drop_gguf_quantizer(model)
    model.save_pretrained(tmp_path / "out")
    assert "quantization_config" not in json.loads((tmp_path / "out" / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert getattr(reloaded, "hf_quantizer", None) is None
