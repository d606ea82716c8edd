"""`prime-trl eval | rerank | visualize` run offline on shipped rows with the tiny model and write their files."""

import json
import os

import pytest

from prime_trl import evaluation
from prime_trl.cli import main as cli
from prime_trl.data import SHIPPED


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_eval_greedy_on_shipped_rows(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["eval", "--model", tiny_model_dir, "--dataset", "eurus", "--max-new-tokens", "6",
                "--output-dir", str(out), "--quiet"]) == 0
    report = _read(out / "eval.json")
    assert report["decoding"] == "greedy" and report["num_problems"] == 5
    sources = {"numina_synthetic_math", "numina_cn_k12", "numina_olympiads", "apps", "taco"}
    assert set(report["metrics"]) == sources | {"all"}
    assert report["metrics"]["all"]["num_problems"] == 5
    records = evaluation.read_jsonl(out / "samples.jsonl")
    assert [len(r["completions"]) for r in records] == [1] * 5
    assert "pass@1" in capsys.readouterr().out


def test_eval_sampling_reports_pass_at_k_and_majority(tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    assert cli(["eval", "--model", tiny_model_dir, "--dataset", SHIPPED["math"], "--num-samples", "4",
                "--max-new-tokens", "6", "--output-dir", str(out), "--quiet"]) == 0
    metrics = _read(out / "eval.json")["metrics"]["all"]
    assert set(metrics) == {"num_problems", "pass@1", "mean_score", "pass@2", "pass@4", "maj@4"}
    records = evaluation.read_jsonl(out / "samples.jsonl")
    assert all(len(r["completions"]) == len(r["scores"]) == 4 for r in records)
    # the table is the metrics of what was written: recompute from the stored scores and answers
    table = evaluation.aggregate_metrics([r["scores"] for r in records], [r["answers"] for r in records],
                                         [r["data_source"] for r in records])
    assert table["all"] == pytest.approx(metrics)


@pytest.mark.parametrize("argv, message", [
    (["eval", "--model", "/no/such/model", "--dataset", "math"], "no such directory"),
    (["eval", "--model", "MODEL", "--dataset", "/no/such.jsonl"], "not found"),
    (["eval", "--model", "MODEL", "--dataset", "math", "--num-samples", "4", "--temperature", "0"], "greedy"),
    (["rerank", "--prm", "/no/such/prm", "--samples", "x.jsonl"], "no such directory"),
    (["visualize", "--prm", "MODEL", "--ref", "MODEL", "--prompt", "q"], "--response"),
])
def test_commands_fail_clearly(argv, message, tiny_model_dir, capsys):
    argv = [tiny_model_dir if a == "MODEL" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_verify_scores_right_and_wrong_answers_on_shipped_rows():
    rows = evaluation.load_rows("math")
    right = [f"So the answer is \\boxed{{{r['ground_truth']}}}." for r in rows]
    table, records = evaluation.evaluate_completions(rows, [[c, "The answer is \\boxed{-1}.", c] for c in right])
    assert [r["scores"] for r in records] == [[1.0, 0.0, 1.0]] * len(rows)
    assert table["all"]["pass@1"] == pytest.approx(2 / 3) and table["all"]["maj@3"] == 1.0


def _write_samples(path):
    """Two math problems, three candidates each; majority is wrong on the first, right on the second."""
    records = [
        {"prompt": [{"role": "user", "content": "What is 40 + 2?"}], "ground_truth": "42", "ability": "math",
         "data_source": "toy",
         "completions": ["40 + 2 = 41.\n\nThe answer is \\boxed{41}.", "The answer is \\boxed{41}.",
                         "40 + 2 = 42.\n\nThe answer is \\boxed{42}."]},
        {"prompt": [{"role": "user", "content": "What is 3 * 3?"}], "ground_truth": "9", "ability": "math",
         "data_source": "toy",
         "completions": ["3 * 3 = 9.\n\n\\boxed{9}", "\\boxed{9}", "3 * 3 = 6.\n\n\\boxed{6}"]},
    ]
    evaluation.write_jsonl(path, records)


def test_rerank_from_samples(tiny_model_dir, perturbed_prm_dir, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "rerank"
    _write_samples(samples)
    assert cli(["rerank", "--prm", perturbed_prm_dir, "--ref", tiny_model_dir, "--samples", str(samples),
                "--output-dir", str(out), "--quiet"]) == 0
    metrics = _read(out / "rerank.json")["metrics"]["all"]
    assert metrics["majority_vote"] == 0.5 and metrics["random"] == pytest.approx(0.5) and metrics["oracle"] == 1.0
    records = evaluation.read_jsonl(out / "rerank_samples.jsonl")
    assert [r["scores"] for r in records] == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    for aggregation in ("sum", "min", "last"):
        # best-of-N's accuracy is the correctness of the highest-scoring candidate of each problem
        picks = [max(range(3), key=lambda i: (r[f"prm_{aggregation}"][i], -i)) for r in records]
        expected = sum(r["scores"][i] for r, i in zip(records, picks)) / 2
        assert metrics[f"best_of_n[{aggregation}]"] == expected
    for r in records:  # "sum" is the sequence reward, i.e. the sum of the step rewards
        assert r["prm_sum"] == pytest.approx([sum(s) for s in r["step_rewards"]])


def test_rerank_samples_candidates_with_the_policy(tiny_model_dir, tmp_path):
    out = tmp_path / "rerank"
    assert cli(["rerank", "--prm", tiny_model_dir, "--ref", tiny_model_dir, "--model", tiny_model_dir,
                "--dataset", "gsm8k", "--num-candidates", "3", "--max-new-tokens", "6", "--max-rows", "2",
                "--step-separators", "\\n", "--output-dir", str(out), "--quiet"]) == 0
    report = _read(out / "rerank.json")
    assert report["num_candidates"] == 3 and report["num_problems"] == 2
    records = evaluation.read_jsonl(out / "rerank_samples.jsonl")
    assert all(v == 0.0 for r in records for v in r["prm_sum"])  # PRM == reference: every reward is 0


def test_visualize_writes_html_png_and_json(tiny_model_dir, perturbed_prm_dir, tmp_path, capsys):
    out = tmp_path / "vis"
    response = "12 + 30 = 42.\n\n[VERIFY]\n\nThe answer is \\boxed{42}."
    assert cli(["visualize", "--prm", perturbed_prm_dir, "--ref", tiny_model_dir, "--prompt", "What is 12 + 30?",
                "--response", response, "--output-dir", str(out)]) == 0
    for name in ("process_rewards.html", "process_rewards.png", "process_rewards.json"):
        assert os.path.getsize(out / name) > 0
    [result] = _read(out / "process_rewards.json")
    assert result["steps"] == ["12 + 30 = 42.\n\n", "[VERIFY]\n\n", "The answer is \\boxed{42}."]
    assert sum(result["step_rewards"]) == pytest.approx(result["sequence_reward"])
    page = (out / "process_rewards.html").read_text()
    assert page.count('class="tok"') == len(result["tokens"]) and page.count('class="step"') == 3
    assert "step  2" in capsys.readouterr().out


def test_visualize_reads_samples(tiny_model_dir, perturbed_prm_dir, tmp_path):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "vis"
    _write_samples(samples)
    assert cli(["visualize", "--prm", perturbed_prm_dir, "--ref", tiny_model_dir, "--samples", str(samples),
                "--num-responses", "4", "--no-png", "--output-dir", str(out)]) == 0
    assert len(_read(out / "process_rewards.json")) == 4
    assert not (out / "process_rewards.png").exists()
    assert "problem 1, sample 0" in (out / "process_rewards.html").read_text()


def test_accuracy_metric_loads_from_the_local_module():
    metric = evaluation.load_accuracy_metric()
    single = metric.compute(predictions=["so \\boxed{42}", "the answer is 7"], references=["42", "8"])
    assert single == pytest.approx({"accuracy": 0.5, "mean_score": 0.5})
    multi = metric.compute(predictions=[["\\boxed{41}", "\\boxed{42}", "\\boxed{41}"]], references=["42"])
    # n = 3, c = 1: pass@2 = 1 - C(2,2)/C(3,2) = 2/3; majority "41" is wrong
    assert multi == pytest.approx({"accuracy": 1 / 3, "mean_score": 1 / 3, "pass@2": 2 / 3, "pass@3": 1.0,
                                   "maj@3": 0.0})


def test_verify_refuses_completions_the_verifier_could_not_run(monkeypatch):
    """A None score (verifier infrastructure failed, e.g. a sandbox broken mid-run) stops the evaluation instead of
    counting as wrong or right."""
    from prime_trl.evaluation import verification

    monkeypatch.setattr(verification, "outcome_reward", lambda completions, *args: [1.0, None][: len(completions)])
    rows = evaluation.load_rows("math")[:1]
    with pytest.raises(RuntimeError, match="1 of 2 completions could not be verified"):
        verification.verify(rows, [["a", "b"]])
