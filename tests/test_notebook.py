"""The QLoRA/GSM8K notebook runs end to end on CPU, so it cannot rot.

The parameter cell (tagged `parameters`) is rewritten to the tiny local model, a few GSM8K-style rows in
a temporary .jsonl and two steps; with `TINY = True` the notebook trains without quantization, which
PRIMETrainer refuses without CUDA. Everything else runs as a user would run it, in a real kernel.
"""

from __future__ import annotations

import json
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, "notebooks", "prime_qlora_gsm8k.ipynb")

GSM8K_ROWS = [  # GSM8K's schema: the final answer follows "####"
    {"question": f"Ann has {a} apples and buys {b} more. How many apples does she have?",
     "answer": f"She has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}
    for a, b in [(3, 4), (10, 5), (7, 8), (12, 30)]
]


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    return cells[0]


@pytest.mark.slow
def test_notebook_runs_end_to_end_on_cpu(tiny_model_dir, tmp_path):
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS))
    output_dir = tmp_path / "run"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = _parameters_cell(nb)
    defaults = {}
    exec(cell.source, {}, defaults)  # the parameters cell is plain assignments
    overrides = dict(
        MODEL=tiny_model_dir, DATASET=str(data), NUM_PROMPTS=4, MAX_STEPS=2, PER_DEVICE_BATCH=8,
        GRADIENT_ACCUMULATION=1, MAX_COMPLETION_LENGTH=12, LEARNING_RATE=1e-2, PRM_LEARNING_RATE=1e-2,
        # The random tiny model never answers right: keep every group so the PRM still gets rows to learn from.
        ACCURACY_LOWER_BOUND=0.0, ACCURACY_UPPER_BOUND=1.0,
        LORA_R=4, OUTPUT_DIR=str(output_dir), TINY=True, INSTALL=False,
    )
    assert set(overrides) <= set(defaults), f"unknown parameters: {set(overrides) - set(defaults)}"
    cell.source += "\n\n# test overrides\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())

    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    def text(cell):
        return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")

    outputs = "\n".join(text(c) for c in nb.cells if c.cell_type == "code")
    assert "adapters: ['default', 'prm']" in outputs
    assert "peak memory:" in outputs
    assert "sequence reward (sum of r_t):" in outputs
    assert (output_dir / "adapter_model.safetensors").is_file()
    assert (output_dir / "prm" / "adapter_model.safetensors").is_file()
    assert (output_dir / "training_curves.png").is_file()
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells for o in c.get("outputs", []))
