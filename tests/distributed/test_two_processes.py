"""Two CPU processes (gloo, `accelerate launch`) agree with one process, and with each other."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "distributed", "prime_worker.py")


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _errors(stderr: str) -> str:
    """The lines of a worker's stderr that matter: progress bars and deprecation warnings removed."""
    noise = ("it/s]", "Warning", "warn(")
    keep = [line for line in stderr.splitlines() if not any(n in line for n in noise)]
    return "\n".join(keep[-60:])


MULTI_PROCESS = ("--multi_gpu",)  # DDP; on a machine without GPUs accelerate runs it on CPUs with gloo


def _deepspeed(stage):
    """The shipped accelerate config; its process count and bf16 are overridden on the command line."""
    return ("--config_file", os.path.join(ROOT, "configs", "accelerate", f"deepspeed_zero{stage}.yaml"))


def _launch(num_processes, mode, out, model_dir, run_dir, launcher=MULTI_PROCESS, env=None):
    # TMPDIR: the launcher's per-run folders go with the test's own, not into /tmp for good
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "TMPDIR": os.path.dirname(str(run_dir)),
           **(env or {})}
    if num_processes == 1:
        cmd = [sys.executable, WORKER]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_processes", str(num_processes),
               "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no",
               "--dynamo_backend", "no", WORKER]
    return subprocess.run(cmd + [mode, str(out), model_dir, str(run_dir)], env=env, capture_output=True, text=True,
                          timeout=300)


def _run(num_processes, mode, out, model_dir, run_dir, **launch):
    proc = _launch(num_processes, mode, out, model_dir, run_dir, **launch)
    assert proc.returncode == 0, _errors(proc.stderr)
    return [json.load(open(f"{out}.rank{r}.json")) for r in range(num_processes)]


@pytest.mark.parametrize("mode", ["fixed", "fixed_one_rank_empty"])
def test_two_processes_give_the_same_advantages_as_one(tiny_model_dir, tmp_path, mode):
    (one,) = _run(1, mode, tmp_path / "one", tiny_model_dir, tmp_path / "run1")
    two, _ = _run(2, mode, tmp_path / "two", tiny_model_dir, tmp_path / "run2")
    assert two["prm_wrapper"] == "DistributedDataParallel" and one["prm_wrapper"] != two["prm_wrapper"]
    a1, a2 = torch.tensor(one["advantages"]), torch.tensor(two["advantages"])
    assert a1.shape == a2.shape == (16, 9)
    assert (a1[:, 1:] - a1[:, :-1]).abs().max() > 1e-3  # process rewards are in play, not only outcomes
    torch.testing.assert_close(a2, a1, atol=1e-5, rtol=1e-4)
    assert two["prm_checksum"] == pytest.approx(one["prm_checksum"], rel=1e-6)
    for key in ("filter/kept_fraction", "prm/loss", "prm/accuracy", "prm/process_reward_mean"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-4, abs=1e-7), key
    if mode == "fixed_one_rank_empty":
        assert one["metrics"]["filter/kept_fraction"] == 0.25
        assert (a1[8:] == 0).all()  # rank 1's rows were filtered out: no advantage, no loss


# One run covers the options whose state crosses processes: the value model's gradient sum, GAE on gathered
# values, the DPO loss's group context, the policy as the PRM's reference.
ESTIMATOR_OPTIONS = {
    "ppo_dpo_policy_ref": dict(advantage_estimator="ppo", value_learning_rate=1e-2, prm_loss_type="dpo",
                               prm_ref_type="policy"),
    "grpo": dict(advantage_estimator="grpo"),
    "reinforce": dict(advantage_estimator="reinforce"),
}


@pytest.mark.parametrize("name", ESTIMATOR_OPTIONS)
def test_two_processes_agree_with_one_for_other_estimators(tiny_model_dir, tmp_path, name):
    env = {"PRIME_TEST_OPTIONS": json.dumps(ESTIMATOR_OPTIONS[name])}
    (one,) = _run(1, "fixed", tmp_path / "one", tiny_model_dir, tmp_path / "run1", env=env)
    two, _ = _run(2, "fixed", tmp_path / "two", tiny_model_dir, tmp_path / "run2", env=env)
    a1, a2 = torch.tensor(one["advantages"]), torch.tensor(two["advantages"])
    assert (a1[:, 1:] - a1[:, :-1]).abs().max() > 1e-3  # process rewards (or values) are in play
    torch.testing.assert_close(a2, a1, atol=1e-5, rtol=1e-4)
    assert two["prm_checksum"] == pytest.approx(one["prm_checksum"], rel=1e-6)
    if "value_checksum" in one:  # the value model's gradient sum across processes is the one-process gradient
        # up to summation order, which AdamW's normalised steps (lr 1e-2) can enlarge on near-zero gradients
        assert two["value_checksum"] == pytest.approx(one["value_checksum"], rel=1e-5)
        assert two["metrics"]["value/loss"] == pytest.approx(one["metrics"]["value/loss"], rel=1e-4)


def test_ppo_under_deepspeed_zero2_trains_like_ddp(tiny_model_dir, tmp_path):
    """PPO's value model beside a ZeRO-2 policy engine: replicated with its own optimizer, it ends as under DDP."""
    pytest.importorskip("deepspeed")
    env = {"PRIME_TEST_OPTIONS": json.dumps(ESTIMATOR_OPTIONS["ppo_dpo_policy_ref"])}
    ddp, _ = _run(2, "train", tmp_path / "ddp", tiny_model_dir, tmp_path / "run-ddp", env=env)
    rank0, rank1 = _run(2, "train", tmp_path / "ds", tiny_model_dir, tmp_path / "run-ds", launcher=_deepspeed(2),
                        env={**env, "PRIME_TEST_CPU_DEEPSPEED": "1"})
    assert rank0["policy_wrapper"] == "DeepSpeedEngine"
    for key in ("policy_checksum", "prm_checksum", "value_checksum"):
        assert rank0[key] == rank1[key], key
    assert rank0["value_checksum"] == pytest.approx(ddp["value_checksum"], rel=1e-6)
    assert rank0["prm_checksum"] == pytest.approx(ddp["prm_checksum"], rel=1e-6)
    assert rank0["policy_checksum"] == pytest.approx(ddp["policy_checksum"], rel=1e-6)


@pytest.fixture(scope="module")
def ddp_training(tiny_model_dir, tmp_path_factory):
    """Two real training steps under DDP, separate and adapter PRM: {mode: [rank0, rank1]}."""
    tmp = tmp_path_factory.mktemp("ddp")
    return {mode: _run(2, mode, tmp / mode, tiny_model_dir, tmp / f"run-{mode}") for mode in ("train", "train_adapter")}


@pytest.mark.parametrize("mode", ["train", "train_adapter"])
def test_two_process_training_keeps_ranks_identical(ddp_training, mode):
    rank0, rank1 = ddp_training[mode]
    assert rank0["policy_checksum"] == rank1["policy_checksum"]
    assert rank0["prm_checksum"] == rank1["prm_checksum"]
    assert rank0["distributed_type"] == "MULTI_CPU" and rank0["num_processes"] == 2
    assert rank0["prm_wrapper"] == ("DistributedDataParallel" if mode == "train" else "PeftModelForCausalLM")


DEEPSPEED_CASES = [(2, "train"), (2, "train_adapter"), (3, "train")]


@pytest.mark.parametrize("stage, mode", DEEPSPEED_CASES)
def test_deepspeed_zero_trains_like_ddp(ddp_training, tiny_model_dir, tmp_path, stage, mode):
    """The policy is a DeepSpeed engine, the PRM replicated beside it: the same weights as under DDP."""
    pytest.importorskip("deepspeed")
    rank0, rank1 = _run(2, mode, tmp_path / "ds", tiny_model_dir, tmp_path / "run", launcher=_deepspeed(stage),
                        env={"PRIME_TEST_CPU_DEEPSPEED": "1"})
    assert rank0["distributed_type"] == "DEEPSPEED" and rank0["num_processes"] == 2
    assert rank0["policy_wrapper"] == "DeepSpeedEngine"
    assert rank0["policy_checksum"] == rank1["policy_checksum"] and rank0["prm_checksum"] == rank1["prm_checksum"]
    ddp = ddp_training[mode][0]
    assert rank0["prm_checksum"] == pytest.approx(ddp["prm_checksum"], rel=1e-9)  # the PRM's math is untouched
    # the policy goes through DeepSpeed's optimizer instead of DDP + torch AdamW: equal up to rounding
    assert rank0["policy_checksum"] == pytest.approx(ddp["policy_checksum"], rel=1e-6)


def test_adapter_prm_under_zero3_fails_clearly(tiny_model_dir, tmp_path):
    pytest.importorskip("deepspeed")
    proc = _launch(2, "train_adapter", tmp_path / "ds", tiny_model_dir, tmp_path / "run", launcher=_deepspeed(3),
                   env={"PRIME_TEST_CPU_DEEPSPEED": "1"})
    assert proc.returncode != 0
    assert "prm_placement='adapter' does not work under DeepSpeed ZeRO-3" in proc.stderr


def test_dynamic_sampling_deals_two_processes_the_batch_one_process_builds(tiny_model_dir, tmp_path):
    (one,) = _run(1, "dynamic_fixed", tmp_path / "one", tiny_model_dir, tmp_path / "run1")
    two = _run(2, "dynamic_fixed", tmp_path / "two", tiny_model_dir, tmp_path / "run2")
    # rounds 1 and 2 keep groups 0, 3 and 11, 12 (tag = 10 * round + group): 4 groups, the batch's 4 prompts
    assert one["tags"] == [0] * 4 + [3] * 4 + [11] * 4 + [12] * 4
    assert two[0]["tags"] + two[1]["tags"] == one["tags"] and two[0]["rows"] == two[1]["rows"] == 8
    for result in (one, *two):
        assert result["metrics"]["sampling/rounds"] == 2 and result["metrics"]["sampling/informative_fraction"] == 0.5
    a1, a2 = torch.tensor(one["advantages"]), torch.tensor(two[0]["advantages"])
    assert (a1 != 0).all(dim=1).any() and (a1[:, 1:] - a1[:, :-1]).abs().max() > 1e-3
    torch.testing.assert_close(a2, a1, atol=1e-5, rtol=1e-4)
    assert two[0]["prm_checksum"] == two[1]["prm_checksum"] == pytest.approx(one["prm_checksum"], rel=1e-6)


@pytest.fixture(scope="module")
def ddp_dynamic(tiny_model_dir, tmp_path_factory):
    """Two real training steps with dynamic sampling under DDP: [rank0, rank1]."""
    tmp = tmp_path_factory.mktemp("ddp-dynamic")
    return _run(2, "train_dynamic", tmp / "dyn", tiny_model_dir, tmp / "run")


def test_dynamic_sampling_training_keeps_ranks_identical_and_equally_loaded(ddp_dynamic):
    rank0, rank1 = ddp_dynamic
    assert rank0["policy_checksum"] == rank1["policy_checksum"] and rank0["prm_checksum"] == rank1["prm_checksum"]
    assert [len(f) for f in rank0["forwards"]] == [len(f) for f in rank1["forwards"]] == [4, 4]  # 2 steps, full
    rows = [n for rank in (rank0, rank1) for forward in rank["forwards"] for n in forward]
    assert all(n % 2 == 1 for n in rows)  # only the informative (odd) prompts reached the policy's gradient


@pytest.mark.parametrize("stage", [2, 3])
def test_dynamic_sampling_under_deepspeed_trains_like_ddp(ddp_dynamic, tiny_model_dir, tmp_path, stage):
    """Dynamic sampling's extra generation rounds and re-dealt batch, with the policy a DeepSpeed engine."""
    pytest.importorskip("deepspeed")
    ddp0 = ddp_dynamic[0]
    rank0, rank1 = _run(2, "train_dynamic", tmp_path / "ds", tiny_model_dir, tmp_path / "run-ds",
                        launcher=_deepspeed(stage), env={"PRIME_TEST_CPU_DEEPSPEED": "1"})
    assert rank0["distributed_type"] == "DEEPSPEED" and rank0["policy_wrapper"] == "DeepSpeedEngine"
    assert rank0["policy_checksum"] == rank1["policy_checksum"] and rank0["prm_checksum"] == rank1["prm_checksum"]
    assert rank0["forwards"] == ddp0["forwards"]  # the same informative rows reached the policy's gradient
    assert rank0["prm_checksum"] == pytest.approx(ddp0["prm_checksum"], rel=1e-9)
    assert rank0["policy_checksum"] == pytest.approx(ddp0["policy_checksum"], rel=1e-6)
