"""`prime-trl train`: trains and saves from a YAML config, reports user errors in one line, and every
shipped config parses."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prime_trl.cli import main as cli_main
from prime_trl.scripts.train import ConfigError, parse_args, resolve_reward_funcs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "*.yaml")))
ACCELERATE_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "accelerate" / "*.yaml")))
# Small and fast on 2 CPU cores: one prompt x 4 samples per step, 4 new tokens.
FAST = ["--max_completion_length", "4", "--max_steps", "2", "--disable_tqdm", "true"]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- training runs ---------------------------------------------------------------------------------
def test_train_in_process_saves_policy_and_trained_prm(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo config names the shipped rows relative to the repository root
    out = tmp_path / "out"
    # A random model verifies nothing (every outcome 0); lower bound 0 keeps those groups, so the PRM learns.
    rc = cli_main(["train", "--config", "configs/demo_offline.yaml", "--model_name_or_path", tiny_model_dir,
                   "--output_dir", str(out), "--accuracy_lower_bound", "0", "--prm_learning_rate", "1e-2", *FAST])
    assert rc == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    prm = load_file(out / "prm" / "model.safetensors")
    start = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert any(not torch.equal(prm[name], start[name]) for name in start)  # the PRM took optimizer steps


def test_train_subprocess_with_dotted_reward_and_env(tiny_model_dir, tmp_path):
    # `python -m prime_trl.cli train`, a reward function imported from the working directory, a local
    # math-schema dataset, and an `env:` mapping, all from one YAML file.
    _write(tmp_path / "my_rewards.py", "import os\n\n"
                                       "def alternate(completions, **kwargs):\n"
                                       "    assert os.environ['PRIME_TRL_TEST_ENV'] == 'from-yaml'\n"
                                       "    return [float(i % 2) for i in range(len(completions))]\n")
    rows = [{"problem": f"What is {i} + {i}?", "solution": f"\\boxed{{{2 * i}}}"} for i in range(4)]
    _write(tmp_path / "rows.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    config = _write(tmp_path / "run.yaml", f"""
env:
  PRIME_TRL_TEST_ENV: "from-yaml"
model_name_or_path: {tiny_model_dir}
dataset_name: {tmp_path / "rows.jsonl"}
reward_funcs: [my_rewards.alternate]
output_dir: {tmp_path / "out"}
use_cpu: true
bf16: false
gradient_checkpointing: false
num_generations: 2
per_device_train_batch_size: 4
max_completion_length: 4
max_steps: 1
report_to: none
save_strategy: "no"
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "prime_trl.cli", "train", "--config", config],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 of 4 rows" in proc.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "prm" / "model.safetensors").is_file()


# -- user errors: one line on stderr, status 2 -----------------------------------------------------
def _error(capsys, argv) -> str:
    rc = cli_main(["train", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip().splitlines()[-1]  # `datasets` may log its own error first
    assert line.startswith("prime-trl train: error: "), err
    return line


def test_missing_config_file_names_the_path(capsys, tmp_path):
    err = _error(capsys, ["--config", str(tmp_path / "nope.yaml")])
    assert f"config file not found: {tmp_path / 'nope.yaml'}" in err


def test_unknown_yaml_keys_are_named(capsys, tmp_path, tiny_model_dir):
    config = _write(tmp_path / "c.yaml", f"model_name_or_path: {tiny_model_dir}\ndataset_name: x.jsonl\n"
                                         "learning_rat: 1.0e-6\nbogus_key: 1\n")
    err = _error(capsys, ["--config", config])
    assert "unknown keys in config file" in err and "['bogus_key', 'learning_rat']" in err


def test_unknown_command_line_flag_is_named(capsys):
    err = _error(capsys, ["--config", str(ROOT / "configs" / "demo_offline.yaml"), "--lerning_rate", "1"])
    assert "--lerning_rate" in err


@pytest.mark.parametrize("content, reason", [(None, "no such file or directory"),
                                             ('{"question": "2+2", "answer": "#### 4"\n', "JSON parse error")])
def test_unreadable_dataset_names_path_and_reason(capsys, tmp_path, content, reason):
    path = tmp_path / "rows.jsonl"
    if content is not None:
        path.write_text(content)
    err = _error(capsys, ["--config", str(ROOT / "configs" / "demo_offline.yaml"), "--dataset_name", str(path)])
    assert f"cannot read dataset {path}" in err and reason in err


def test_bad_row_names_row_and_field(capsys, tmp_path):
    path = _write(tmp_path / "rows.jsonl", '{"question": "2+2", "answer": "four"}\n')
    err = _error(capsys, ["--config", str(ROOT / "configs" / "demo_offline.yaml"), "--dataset_name", path])
    assert "row 0: field 'answer'" in err


def test_unknown_reward_function_lists_the_valid_names(capsys):
    err = _error(capsys, ["--config", str(ROOT / "configs" / "demo_offline.yaml"), "--reward_funcs", "math", "mathh"])
    assert "unknown reward function 'mathh'" in err and "['code', 'math', 'outcome']" in err


def test_invalid_prime_value_is_reported(capsys):
    err = _error(capsys, ["--config", str(ROOT / "configs" / "demo_offline.yaml"), "--prm_beta", "0"])
    assert "prm_beta must be > 0" in err


# -- shipped configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_shipped_config_parses(config):
    # bf16 configs are for GPUs; use_cpu lets TrainingArguments accept them on a CPU-only machine.
    script_args, training_args, model_args = parse_args(["--config", config, "--use_cpu", "true"])
    assert model_args.model_name_or_path and script_args.dataset_name
    assert len(resolve_reward_funcs(script_args.reward_funcs)) == len(script_args.reward_funcs)


def test_paper_config_batch_arithmetic_for_8_processes():
    script_args, args, _ = parse_args(["--config", str(ROOT / "configs" / "paper_eurus_7b.yaml"), "--use_cpu", "true"])
    processes = 8
    assert args.per_device_train_batch_size * processes * args.steps_per_generation == 256 * 4  # rollout: 256 x 4
    assert args.per_device_train_batch_size * processes * args.gradient_accumulation_steps == 256  # per optimizer step
    assert args.steps_per_generation // args.gradient_accumulation_steps == 4  # optimizer steps per rollout
    assert args.max_steps == 592 * 4
    assert (args.learning_rate, args.prm_learning_rate, args.prm_beta, args.beta) == (5e-7, 1e-6, 0.05, 0.0)
    assert (args.accuracy_lower_bound, args.accuracy_upper_bound, args.prm_num_mini_batches) == (0.2, 0.8, 4)
    assert (args.max_completion_length, script_args.max_prompt_length, args.temperature) == (3072, 1024, 1.0)


def test_command_line_overrides_yaml_and_env_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIME_TRL_TEST_ENV", "unset")  # restored (removed) after the test
    config = _write(tmp_path / "c.yaml", "env:\n  PRIME_TRL_TEST_ENV: set\nmodel_name_or_path: m\n"
                                         "dataset_name: d.jsonl\nuse_cpu: true\nlearning_rate: 1.0e-6\n")
    _, args, _ = parse_args(["--config", config, "--learning_rate", "3e-6"])
    assert args.learning_rate == 3e-6
    assert os.environ["PRIME_TRL_TEST_ENV"] == "set"


def test_missing_model_is_a_config_error(tmp_path):
    config = _write(tmp_path / "c.yaml", "dataset_name: d.jsonl\nuse_cpu: true\n")
    with pytest.raises(ConfigError, match="model_name_or_path is not set"):
        parse_args(["--config", config])


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=os.path.basename)
def test_accelerate_config_loads(config):
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(config).num_processes >= 1
