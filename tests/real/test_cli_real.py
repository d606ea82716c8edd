"""`prime-trl train` and `prime-trl eval` on a real pretrained checkpoint (SmolLM2-135M-Instruct).

One YAML run (module fixture): LoRA policy with a *separate* full PRM (the placement the Python-API test does not
cover), 2 steps of one prompt x 4 samples on few-shot word problems in the Eurus schema. The accuracy band is
[0, 1] here so that the PRM learns from every group whatever the samples' outcomes (the Python-API test runs the
paper's [0.2, 0.8]). Then the saved PRM is scored against its reference,
and `prime-trl eval` runs on the saved policy adapter and is checked against plain greedy `generate` through the
chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prime_trl import ImplicitPRM
from prime_trl.cli import main as cli_main
from prime_trl.verifiers import math_reward
from prime_trl.word_problems import eurus_rows, few_shot_prompt, problem

pytestmark = pytest.mark.slow
MAX_NEW_TOKENS = 24


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def trained(smollm2_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("real-cli")
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(f"""
model_name_or_path: {smollm2_dir}
dtype: float32
use_peft: true
lora_r: 8
lora_alpha: 16
lora_dropout: 0.0
lora_target_modules: [q_proj, k_proj, v_proj, o_proj]
prm_placement: separate
dataset_name: {_jsonl(tmp_path / "rows.jsonl", eurus_rows(4))}
reward_funcs: [math]
add_prompt_suffix: false
output_dir: {out}
use_cpu: true
bf16: false
gradient_checkpointing: false
seed: 0
max_steps: 2
num_generations: 4
per_device_train_batch_size: 4
max_completion_length: {MAX_NEW_TOKENS}
temperature: 0.7
learning_rate: 1.0e-3
prm_learning_rate: 1.0e-4
accuracy_lower_bound: 0.0
accuracy_upper_bound: 1.0
logging_steps: 1
save_strategy: "no"
report_to: none
disable_tqdm: true
""")
    assert cli_main(["train", "--config", str(config)]) == 0
    return out


def test_train_saves_policy_adapter_and_a_moved_full_prm(trained, smollm2_dir):
    assert (trained / "adapter_model.safetensors").is_file()
    assert json.loads((trained / "adapter_config.json").read_text())["base_model_name_or_path"] == smollm2_dir
    prm, start = load_file(trained / "prm" / "model.safetensors"), load_file(Path(smollm2_dir) / "model.safetensors")
    assert set(prm) == set(start)  # tied embeddings stay tied: no separate lm_head tensor appears
    assert [n for n in start if not torch.equal(prm[n], start[n])], "the PRM never took an update"


def test_saved_prm_gives_nonzero_process_rewards(trained, smollm2_dir):
    prm = ImplicitPRM.from_pretrained(str(trained), ref_path=smollm2_dir)  # resolves to trained/prm
    question, answer = problem(0)
    result = prm.score(few_shot_prompt(question), f"{question.split()[2]} + 2 = \\boxed{{{answer}}}")
    rewards = torch.tensor(result.token_rewards)
    assert torch.isfinite(rewards).all() and rewards.abs().max() > 0


def test_eval_on_the_trained_policy_matches_greedy_generate(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [{"prompt": few_shot_prompt(q), "ground_truth": a, "ability": "math", "data_source": "word_problems"}
            for q, a in map(problem, range(2))]  # fmt: skip
    data = _jsonl(tmp_path / "eval.jsonl", rows)
    rc = cli_main(["eval", "--model", str(trained), "--dataset", data, "--max-new-tokens", str(MAX_NEW_TOKENS),
                   "--backend", "hf", "--quiet", "--output-dir", str(tmp_path / "eval")])  # fmt: skip
    assert rc == 0
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["num_problems"] == 2 and report["decoding"] == "greedy"

    # The oracle: the base with the policy adapter, the chat template, greedy decoding, special tokens dropped.
    tokenizer = AutoTokenizer.from_pretrained(trained)
    config = json.loads((trained / "adapter_config.json").read_text())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"]), trained)
    for row, sample in zip(rows, samples):
        ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)  # fmt: skip
        with torch.no_grad():
            out = model.generate(**ids, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
        expected = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert sample["completions"] == [expected]
        assert sample["scores"] == math_reward([[{"role": "assistant", "content": expected}]],
                                               ground_truth=[row["ground_truth"]])  # fmt: skip
