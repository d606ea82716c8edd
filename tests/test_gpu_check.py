"""bench/gpu_check.py's dry mode: on CPU with tiny models, every section runs its plumbing and lands in the JSON.

The GPU figures themselves need a CUDA device; this only shows that the script would produce them and that one
failing section is recorded without stopping the others.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch

from bench_scripts import load_bench

gpu_check = load_bench("gpu_check")

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU dry mode")


@pytest.mark.slow  # six tiny trainers, two steps each
def test_dry_run_measures_every_variant_and_writes_one_json(tmp_path):
    out = tmp_path / "check.json"
    report = gpu_check.main(["--dry-run", "--out", str(out), "--sections", "throughput", "qlora", "vllm"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["dry_run"] is True and report["device"].startswith("CPU")
    sections = report["sections"]

    throughput = sections["throughput"]
    assert throughput["status"] == "ok", throughput.get("traceback")
    assert set(throughput["variants"]) == set(gpu_check.THROUGHPUT_VARIANTS)
    for name, variant in throughput["variants"].items():
        assert len(variant["seconds_per_step"]) == gpu_check.PROFILES["dry"]["steps"] - 1  # warm-up dropped
        assert variant["tokens_per_s"] > 0 and variant["mfu_policy_6NT"] is None  # no peak FLOP/s on CPU
        prm_seconds = variant["median_breakdown_s"]["PRM fwd+update"]
        assert (prm_seconds > 0) == name.startswith("PRIME")  # the PRM's work is timed, and only PRIME has it
    assert set(throughput["prime_over_grpo_seconds_per_step"]) == set(gpu_check.PAIRS)

    qlora = sections["qlora"]
    assert qlora["status"] == "ok", qlora.get("traceback")
    assert qlora["quantized"] is False and qlora["prime_over_grpo_peak"] is None  # no CUDA: plain LoRA
    assert qlora["adapters_moved_base_frozen"] is True
    assert qlora["variants"]["GRPO-QLoRA"]["tensors_moved"]["PRM adapter"] == 0  # GRPO has no PRM adapter

    if importlib.util.find_spec("vllm") is None:
        assert sections["vllm"]["status"] == "not installed"


def test_a_failing_section_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    work_dirs = []

    def broken(ctx):
        work_dirs.append(ctx["work"])
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.SECTIONS, "qlora", broken)
    out = tmp_path / "check.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--sections", "qlora", "vllm"])
    assert len(work_dirs) == 1 and not os.path.exists(work_dirs[0])  # its random models are not left in /tmp
    sections = json.loads(out.read_text())["sections"]
    assert sections["qlora"]["status"] == "error" and sections["qlora"]["error"] == "RuntimeError: boom"
    assert "in broken" in sections["qlora"]["traceback"]
    assert list(sections) == ["qlora", "vllm"] and sections["vllm"]["status"] != "error"


def test_without_cuda_the_real_run_refuses_and_names_the_dry_mode(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--out", os.devnull])
    assert exit_info.value.code == 2 and "--dry-run" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_executes_the_notebook(tmp_path):
    report = gpu_check.main(["--dry-run", "--out", str(tmp_path / "check.json"), "--sections", "notebook"])
    notebook = report["sections"]["notebook"]
    assert notebook["status"] == "ok", notebook.get("error")
    assert notebook["cells_executed"] == notebook["code_cells"]
    lines = "\n".join(notebook["key_lines"])
    assert "4-bit base: False" in lines and "peak memory:" in lines and "sequence reward (sum of r_t):" in lines
