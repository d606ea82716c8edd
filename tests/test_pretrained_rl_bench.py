"""bench/pretrained_rl.py: the paired per-problem statistics by hand, and both methods end to end on the tiny model
(the real checkpoint is the benchmark's, too slow for a test)."""

import argparse
import json

import pytest

from bench_scripts import load_bench

bench = load_bench("pretrained_rl")
intervals = load_bench("intervals")

FACTS = [7, 7, 9, 9]  # four held-out problems, two facts


def run(per_problem, samples=64, health=()):
    """A saved run evaluated at evenly spaced sample counts, its curve's accuracy that of its answers."""
    curve = [{"samples": samples * i // (len(per_problem) - 1), "accuracy": sum(answers) / len(answers)}
             for i, answers in enumerate(per_problem)]  # fmt: skip
    return {"per_problem": per_problem, "curve": curve, "health": list(health)}


def test_fact_bootstrap_is_the_mean_with_bounds_from_whole_facts():
    value, low, high = bench.fact_bootstrap({7: [1.0, 1.0], 9: [0.0, 0.0]})
    assert value == 0.5
    assert (low, high) == (0.0, 1.0)  # a resample of two whole facts: both 7 (1.0), one each (0.5), both 9 (0.0)
    # facts alike: no spread, though resampling single problems of [1, 0, 1, 0] would spread from 0 to 1
    assert bench.fact_bootstrap({7: [1.0, 0.0], 9: [1.0, 0.0]}) == [0.5, 0.5, 0.5]


def test_summary_pairs_methods_by_problem_and_seeds_by_t():
    before = [False, True, False, False]
    onpolicy = {"step": 20, "prm/onpolicy_pairwise_accuracy": 0.75, "prm/onpolicy_reference_pairwise_accuracy": 0.5,
                "prm/onpolicy_mixed_groups": 12.0}
    runs = {
        ("prime", 0): run([before, [True, True, True, False]], health=[{"step": 0, "other": 1.0}, onpolicy]),
        ("rloo", 0): run([before, [True, False, False, False]]),
        ("prime", 1): run([before, [False, True, True, True]]),
        ("rloo", 1): run([before, [False, True, True, True]]),
    }
    report = bench.summarize(runs, [0, 1], FACTS)
    assert (report["num_heldout"], report["num_facts"]) == (4, 2)
    seed0 = report["per_seed"][0]
    assert seed0["accuracy_before"] == 0.25
    assert seed0["PRIME"][0] == 0.75 and seed0["RLOO"][0] == 0.25
    assert seed0["PRIME gain"][0] == 0.5 and seed0["RLOO gain"][0] == 0.0  # (+1, 0, +1, 0) / 4, (+1, -1, 0, 0) / 4
    assert seed0["PRIME - RLOO"][0] == 0.5  # (0, +1, +1, 0) / 4
    for name in ("PRIME", "RLOO", "PRIME gain", "RLOO gain", "PRIME - RLOO"):
        value, low, high = seed0[name]
        assert low <= value <= high
    assert seed0["onpolicy_prm"] == [{"step": 0}, onpolicy]  # only the on-policy keys are kept
    assert report["per_seed"][1]["PRIME - RLOO"] == [0.0, 0.0, 0.0]  # identical answers: no difference at all
    # over seeds: Student t on the per-seed values, PRIME - RLOO (0.5, 0.0) and PRIME's gain (0.5, 0.5)
    assert report["over_seeds"]["PRIME - RLOO"] == list(intervals.mean_ci([0.5, 0.0]))
    assert report["over_seeds"]["PRIME gain"] == [0.5, 0.0]
    assert bench.summarize(runs, [0], FACTS).get("over_seeds") is None  # one seed: no t interval


def test_summary_gives_the_samples_each_method_needs_to_reach_the_others_final_accuracy():
    before = [True, False, False, False]  # 0.25
    prime = run([before, [True, True, True, False], [True, True, True, False]])  # 0.25 -> 0.75 at 32 -> 0.75 at 64
    rloo = run([before, [True, True, False, False], [True, True, False, False]])  # 0.25 -> 0.5 at 32 -> 0.5 at 64
    efficiency = bench.summarize({("prime", 0): prime, ("rloo", 0): rloo}, [0], FACTS)["sample_efficiency"]
    # RLOO's final 0.5 lies halfway along PRIME's first segment (0.25 -> 0.75 over 32 samples): 16 samples, 64 / 16
    assert efficiency["PRIME_samples_to_reach_other_final"] == 16.0
    assert efficiency["PRIME_sample_efficiency_vs_other"] == 4.0
    assert efficiency["RLOO_samples_to_reach_other_final"] is None  # RLOO never reaches 0.75
    assert efficiency["PRIME_sample_efficiency_vs_other_per_seed"] == [4.0]
    reach_text = load_bench("sample_efficiency").reach_text  # printed for both benchmarks
    assert reach_text(efficiency, "PRIME") == "after 16 samples, x4.00 (one seed: no interval)"
    assert reach_text(efficiency, "RLOO") == "never (one seed: no interval)"


def test_summary_refuses_runs_from_different_starts_or_on_other_problems():
    runs = {("prime", 0): run([[True, False, False, False]] * 2), ("rloo", 0): run([[False] * 4] * 2)}
    with pytest.raises(SystemExit, match="seed 0: PRIME and RLOO start from different"):
        bench.summarize(runs, [0], FACTS)
    runs = {("prime", 0): run([[True, False]] * 2), ("rloo", 0): run([[True, False]] * 2)}  # 2 problems, not 4
    with pytest.raises(SystemExit, match="seed 0: a run was evaluated on other held-out problems than the 4"):
        bench.summarize(runs, [0], FACTS)


@pytest.mark.slow
def test_both_methods_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    argv = ["--model", tiny_model_dir, "--out", str(tmp_path), "--seeds", "0", "--steps", "2", "--prompts-per-step",
            "2", "--num-generations", "2", "--max-new-tokens", "4", "--num-train", "4", "--num-heldout", "4",
            "--onpolicy", "2", "--eval-every", "1", "--learning-rate", "1e-2"]  # fmt: skip
    assert bench.main([*argv, "--methods", "rloo"]) == 0  # one method alone: saved, no summary
    assert not (tmp_path / "report.json").exists()
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    prime, rloo = (json.loads((tmp_path / "runs" / f"{m}-0.json").read_text()) for m in ("prime", "rloo"))
    for saved in (prime, rloo):
        assert [len(answers) for answers in saved["per_problem"]] == [4, 4, 4]  # every held-out problem, each check
        assert [point["step"] for point in saved["curve"]] == [0, 1, 2]  # --eval-every 1
        assert saved["curve"][-1]["samples"] == 2 * 2 * 2  # two generation batches of 2 prompts x 2 rollouts
    assert prime["per_problem"][0] == rloo["per_problem"][0]  # the same start, greedy
    assert [entry["step"] for entry in prime["health"]] == [0, 1, 2]  # the PRM measured on the policy at each check
    assert rloo["health"] == []
    steps = [entry for entry in prime["logs"] if "loss" in entry]
    assert len(steps) == 2 and all("prm/loss" in entry for entry in steps)  # PRIME's PRM takes its update each step
    assert not any("prm/loss" in entry for entry in rloo["logs"])  # outcome-only RLOO leaves it frozen
    seed0 = report["per_seed"]["0"]
    assert seed0["PRIME"][0] == sum(prime["per_problem"][-1]) / 4
    assert seed0["onpolicy_prm"][0]["step"] == 0
    printed = capsys.readouterr().out
    assert "PRIME - RLOO" in printed and "PRIME reaches RLOO's final accuracy" in printed
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert set(report["sample_efficiency"]) >= {"PRIME_sample_efficiency_vs_other", "RLOO_samples_to_reach_other_final"}
    with pytest.raises(SystemExit, match="runs/prime-0.json was trained with other --steps, --learning-rate;"):
        bench.main([*argv[:7], "3", *argv[8:-1], "1e-3"])  # saved runs of other settings are not read back


@pytest.mark.slow
def test_prime_from_a_warmed_up_prm_with_several_prm_steps(tiny_model_dir, tmp_path, monkeypatch):
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import prime_trl.demo.rl as demo_rl

    warmed = str(tmp_path / "warmed")  # stands in for bench/pretrained_prm.py --save-prm: a PRM unlike its start
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.save_pretrained(warmed)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(warmed)
    calls = []

    def one_right_per_group(completions, **kwargs):  # groups of 2 are contiguous: every group sits in the band
        return [float(i % 2 == 0) for i in range(len(completions))]

    def recording_run_rl(*args, **kwargs):
        calls.append(kwargs)
        return real_run_rl(*args, **kwargs, reward_funcs=[one_right_per_group])  # the tiny model never answers

    real_run_rl = demo_rl.run_rl
    monkeypatch.setattr(demo_rl, "run_rl", recording_run_rl)

    out = tmp_path / "out"
    argv = ["--model", tiny_model_dir, "--out", str(out), "--seeds", "0", "--steps", "2", "--prompts-per-step", "2",
            "--num-generations", "2", "--max-new-tokens", "4", "--num-train", "4", "--num-heldout", "4",
            "--onpolicy", "2"]  # fmt: skip
    assert bench.main(argv) == 0
    untrained_prime = json.loads((out / "runs" / "prime-0.json").read_text())
    (out / "runs" / "prime-0.json").rename(out / "untrained-prime-0.json")
    assert bench.main([*argv, "--prm-init", warmed, "--prm-mini-batches", "2"]) == 0  # RLOO's run is read back
    assert len(calls) == 3  # PRIME, RLOO, then PRIME again: RLOO does not read the PRM's options
    prime_kwargs, _, warm_kwargs = calls
    assert (warm_kwargs["prm_model_name_or_path"], warm_kwargs["prm_num_mini_batches"]) == (warmed, 2)
    assert warm_kwargs["prm_ref_model_name_or_path"] == prime_kwargs["prm_ref_model_name_or_path"] == tiny_model_dir
    assert prime_kwargs["prm_model_name_or_path"] is None and prime_kwargs["prm_num_mini_batches"] == 1
    assert prime_kwargs["eval_every"] == 2  # without --eval-every: the start and the end (--steps) only

    def first_prm_loss(run):
        return next(entry["prm/loss"] for entry in run["logs"] if "prm/loss" in entry)

    # the first update's loss comes from the PRM before it: an untrained PRM equals its reference, so every
    # sequence reward is 0 and the cross-entropy is ln 2; the warmed-up PRM starts elsewhere
    assert first_prm_loss(untrained_prime) == pytest.approx(math.log(2), abs=1e-6)
    warm = json.loads((out / "runs" / "prime-0.json").read_text())
    assert abs(first_prm_loss(warm) - math.log(2)) > 1e-4
    with pytest.raises(SystemExit, match="prime-0.json was trained with other --prm-init, --prm-mini-batches;"):
        bench.main(argv)
    (out / "runs" / "prime-0.json").rename(out / "warm-prime-0.json")
    assert bench.main([*argv, "--prm-init", warmed, "--prm-update", "none"]) == 0
    assert calls[-1]["prm_update"] == "none" and prime_kwargs["prm_update"] == "after"
    frozen = json.loads((out / "runs" / "prime-0.json").read_text())
    steps = [entry for entry in frozen["logs"] if "loss" in entry]
    assert not any("prm/loss" in entry for entry in steps)  # the offline PRM never learns
    assert all(entry["prm/process_reward_mean"] != 0 for entry in steps)  # but it scores every step


def test_compare_pairs_two_saved_runs_and_reads_their_training_traces(tmp_path, capsys):
    args = argparse.Namespace(heldout_fraction=0.5, split_seed=0, num_train=None, num_heldout=4)
    heldout = bench.split_rows(args)["heldout"]
    facts = [r["fact"] for r in heldout]
    before = [False, False, True, False]
    logs = [{"completions/clipped_ratio": c, "prm/accuracy": a} for c, a in ((0.5, 1.0), (0.25, 0.5), (0.0, 0.25),
                                                                            (0.125, 0.75))]  # fmt: skip
    warm = {**run([before, [True, True, True, False]]), "logs": logs}
    rloo = {**run([before, [True, False, False, False]]), "logs": [{k: e[k] for k in e if k != "prm/accuracy"}
                                                                   for e in logs]}  # fmt: skip
    paths = []
    for name, saved in (("warm", warm), ("rloo", rloo)):
        paths.append(str(tmp_path / f"{name}.json"))
        (tmp_path / f"{name}.json").write_text(json.dumps(saved))
    comparison = bench.compare_runs(paths, facts)
    assert comparison["difference"] == bench.paired_difference(warm["per_problem"][-1], rloo["per_problem"][-1], facts)
    assert comparison["difference"][0] == 0.5  # (0, +1, +1, 0) / 4
    assert comparison["traces"][paths[0]] == {
        "cut-off share, first step": 0.5, "cut-off share, most in the second half": 0.125,
        "in-batch PRM pairwise accuracy, first half": 0.75, "in-batch PRM pairwise accuracy, second half": 0.5}
    assert list(comparison["traces"][paths[1]]) == ["cut-off share, first step",
                                                    "cut-off share, most in the second half"]  # RLOO: no PRM
    assert bench.main(["--compare", *paths, "--num-heldout", "4"]) == 0
    assert "paired by problem: +0.500" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="do not start from the same greedy answers on these 2 held-out problems"):
        bench.main(["--compare", *paths, "--num-heldout", "2"])
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0"])  # training needs --model and --out
