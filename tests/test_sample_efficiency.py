"""The sample-efficiency benchmark's arithmetic: interpolated samples-to-target and seed means."""

import pytest

from bench_scripts import load_bench

bench = load_bench("sample_efficiency")

CURVE = [{"samples": 0, "accuracy": 0.5}, {"samples": 100, "accuracy": 0.6}, {"samples": 200, "accuracy": 0.8}]


def test_samples_to_reach_interpolates_between_checks():
    assert bench.samples_to_reach(CURVE, 0.5) == 0.0
    assert bench.samples_to_reach(CURVE, 0.55) == pytest.approx(50.0)  # halfway from 0.5 to 0.6
    assert bench.samples_to_reach(CURVE, 0.7) == pytest.approx(150.0)  # halfway from 0.6 to 0.8
    assert bench.samples_to_reach(CURVE, 0.9) is None


def test_mean_curve_averages_pointwise():
    other = [{"samples": 0, "accuracy": 0.3}, {"samples": 100, "accuracy": 0.4}, {"samples": 200, "accuracy": 0.6}]
    assert [round(p["accuracy"], 6) for p in bench.mean_curve([CURVE, other])] == [0.4, 0.5, 0.7]
    # dynamic sampling: the seeds reach the same check after different numbers of completions
    refilled = [{"samples": 0, "accuracy": 0.3}, {"samples": 300, "accuracy": 0.4}, {"samples": 500, "accuracy": 0.6}]
    assert [p["samples"] for p in bench.mean_curve([CURVE, refilled])] == [0, 200, 350]


intervals = load_bench("intervals")


def test_mean_ci_is_the_t_interval():
    # (1, 2, 3): mean 2, s = 1, half-width = t_{0.975,2} * 1 / sqrt(3) = 4.303 / 1.732 = 2.484
    mean, half = intervals.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / 3**0.5)
    # (0.5, 0.5): no spread, zero width; one value: undefined width
    assert intervals.mean_ci([0.5, 0.5]) == (0.5, 0.0)
    assert intervals.mean_ci([0.7])[1] != intervals.mean_ci([0.7])[1]  # NaN
    # 40 values: beyond the table, the normal 1.96
    mean, half = intervals.mean_ci([0.0, 1.0] * 20)
    assert half == pytest.approx(1.96 * (sum((v - 0.5) ** 2 for v in [0.0, 1.0] * 20) / 39) ** 0.5 / 40**0.5)


def test_paired_difference_uses_the_per_seed_differences():
    # differences (0.1, 0.2, 0.3): mean 0.2, s = 0.1, half-width 4.303 * 0.1 / sqrt(3)
    mean, half = intervals.paired_difference_ci([0.6, 0.7, 0.9], [0.5, 0.5, 0.6])
    assert mean == pytest.approx(0.2) and half == pytest.approx(0.4303 / 3**0.5)
    with pytest.raises(ValueError, match="same length"):
        intervals.paired_difference_ci([1.0], [1.0, 2.0])


def test_proportion_ci():
    assert intervals.proportion_ci(500, 1000) == pytest.approx((0.5, 1.96 * (0.25 / 1000) ** 0.5))


def test_bootstrap_ci_brackets_the_statistic_and_counts_undefined_as_infinite():
    assert intervals.bootstrap_ci([2.0, 2.0, 2.0], lambda xs: sum(xs) / len(xs), 200) == (2.0, 2.0)
    low, high = intervals.bootstrap_ci([1.0, 2.0, 3.0], lambda xs: sum(xs) / len(xs), 2000)
    assert 1.0 <= low < 2.0 < high <= 3.0
    # None whenever the resample holds a 3: that is 1 - (2/3)^3 = 70% of resamples, so the upper end is undefined
    low, high = intervals.bootstrap_ci([1.0, 2.0, 3.0], lambda xs: None if 3.0 in xs else max(xs), 2000)
    assert low == 1.0 and high is None


def _curve(*accuracies, step=100):
    return [{"samples": i * step, "accuracy": a} for i, a in enumerate(accuracies)]


def test_efficiency_ratio_reads_the_other_methods_final_accuracy():
    # PRIME reaches RLOO's final 0.6 at 100 samples; RLOO's budget is 200 -> 2x
    assert bench.efficiency_ratio(_curve(0.5, 0.6, 0.8), _curve(0.5, 0.55, 0.6)) == pytest.approx(2.0)
    # RLOO never reaches PRIME's final 0.8
    assert bench.efficiency_ratio(_curve(0.5, 0.55, 0.6), _curve(0.5, 0.6, 0.8)) is None
    # the other ended below where this one started: reached at 0 samples, no finite ratio
    assert bench.samples_to_reach(_curve(0.5, 0.6), 0.4) == 0.0
    assert bench.efficiency_ratio(_curve(0.5, 0.6), _curve(0.5, 0.4)) is None


def test_summarize_paired_seeds_by_hand():
    """Seed 0: PRIME (0.5, 0.6, 0.8), RLOO (0.5, 0.55, 0.6); seed 1: PRIME (0.5, 0.7, 0.8), RLOO (0.5, 0.6, 0.7).

    Finals: PRIME (0.8, 0.8), RLOO (0.6, 0.7); paired differences (0.2, 0.1): mean 0.15, s = 0.0707,
    half-width 12.706 * 0.0707 / sqrt(2) = 0.635. Mean curves: PRIME (0.5, 0.65, 0.8), RLOO (0.5, 0.575, 0.65):
    PRIME reaches 0.65 at 100 samples -> ratio 200 / 100 = 2; RLOO never reaches 0.8.
    Per seed: seed 0 PRIME reaches 0.6 at 100 (x2); seed 1 reaches 0.7 at 100 (x2).
    """
    prime = [_curve(0.5, 0.6, 0.8), _curve(0.5, 0.7, 0.8)]
    rloo = [_curve(0.5, 0.55, 0.6), _curve(0.5, 0.6, 0.7)]
    report = bench.summarize(prime, rloo, num_resamples=500)
    assert report["PRIME_final_accuracy"]["mean"] == pytest.approx(0.8)
    assert report["RLOO_final_accuracy"]["per_seed"] == [0.6, 0.7]
    assert report["PRIME_minus_RLOO_final_accuracy"]["mean"] == pytest.approx(0.15)
    assert report["PRIME_minus_RLOO_final_accuracy"]["ci95"] == pytest.approx(12.706 * 0.5**0.5 * 0.1 / 2**0.5)
    assert report["PRIME_sample_efficiency_vs_other"] == pytest.approx(2.0)
    assert report["PRIME_samples_to_reach_other_final"] == pytest.approx(100.0)
    assert report["PRIME_sample_efficiency_vs_other_per_seed"] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert report["PRIME_sample_efficiency_vs_other_ci95"] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert report["RLOO_sample_efficiency_vs_other"] is None
    assert report["RLOO_sample_efficiency_vs_other_ci95"] == [None, None]
    with pytest.raises(ValueError, match="paired seeds"):
        bench.summarize(prime, rloo[:1])


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_a_tiny_demo(tmp_path):
    """Two paired seeds of one RL step each from a tiny demo's SFT model; a rerun reads the saved runs back."""
    import json

    from prime_trl.scripts.demo import main as demo_main

    demo = tmp_path / "demo"
    assert demo_main(["--output-dir", str(demo), "--num_sft", "64", "--num_rl", "8", "--num_eval", "8",
                      "--num_dev", "4", "--num_pool", "2", "--hidden_size", "32", "--num_layers", "1",
                      "--num_heads", "2", "--sft_max_steps", "2", "--sft_batch_size", "4",
                      "--sft_target_accuracy", "0", "--max_completion_length", "8", "--num_group_prompts", "2",
                      "--num_generations", "2", "--rl_max_steps", "1", "--rl_prompts_per_step", "2",
                      "--policy_mini_batches", "1", "--prm_num_mini_batches", "1"]) == 0  # fmt: skip
    argv = ["--demo-dir", str(demo), "--seeds", "0", "1", "--steps", "1", "--eval-every", "1"]
    assert bench.main(argv) == 0
    report = json.loads((demo / "sample_efficiency" / "sample_efficiency.json").read_text())
    assert report["num_seeds"] == 2 and report["num_eval_prompts"] == 8
    assert [len(c) for c in report["curves"]["PRIME"]] == [2, 2]  # step 0 and step 1, per seed
    assert "PRIME_sample_efficiency_vs_other" in report
    assert [h["seed"] for h in report["prime_prm_health_final"]] == [0, 1]
    saved = (demo / "sample_efficiency" / "run-0-PRIME" / "curve.json").read_text()
    assert bench.main(argv) == 0  # every run is read back, nothing retrains
    assert (demo / "sample_efficiency" / "run-0-PRIME" / "curve.json").read_text() == saved


def test_a_demo_directory_from_before_the_policy_reference_is_read_as_it_ran(tmp_path, tiny_model_dir):
    import json
    import shutil
    from dataclasses import asdict

    from demo_run import load_demo_run

    from prime_trl.demo import DemoArguments, rl_settings

    shutil.copytree(tiny_model_dir, tmp_path / "sft")
    recorded = asdict(DemoArguments(num_sft=8, num_rl=4, num_eval=4, num_dev=2, num_pool=2))
    (tmp_path / "eval.json").write_text(json.dumps({"args": recorded}))
    assert rl_settings(load_demo_run(str(tmp_path)).args)["prm_ref_type"] == "policy"  # the demo's recipe now
    del recorded["prm_ref_type"]  # written before the field existed: the frozen SFT model was the PRM's reference
    (tmp_path / "eval.json").write_text(json.dumps({"args": recorded}))
    assert rl_settings(load_demo_run(str(tmp_path)).args)["prm_ref_type"] == "frozen"


def test_summarize_names_the_baseline():
    prime, grpo = [_curve(0.5, 0.6, 0.8), _curve(0.5, 0.7, 0.8)], [_curve(0.5, 0.55, 0.6), _curve(0.5, 0.6, 0.7)]
    report = bench.summarize(prime, grpo, other="GRPO", num_resamples=200)
    assert report["PRIME_minus_GRPO_final_accuracy"]["mean"] == pytest.approx(0.15)
    assert report["GRPO_final_accuracy"]["per_seed"] == [0.6, 0.7] and report["GRPO_sample_efficiency_vs_other"] is None
    assert report["PRIME_sample_efficiency_vs_other"] == pytest.approx(2.0)
