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
    keep = [line for line in stderr.splitlines() if "it/s]" not in line and "Warning" not in line and "warn(" not in line]
    return "\n".join(keep[-60:])


def _run(num_processes, mode, out, model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    if num_processes == 1:
        cmd = [sys.executable, WORKER]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
               "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend", "no", WORKER]
    proc = subprocess.run(cmd + [mode, str(out), model_dir, str(tmp_path / f"run{num_processes}")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _errors(proc.stderr)
    return [json.load(open(f"{out}.rank{r}.json")) for r in range(num_processes)]


@pytest.mark.parametrize("mode", ["fixed", "fixed_one_rank_empty"])
def test_two_processes_give_the_same_advantages_as_one(tiny_model_dir, tmp_path, mode):
    (one,) = _run(1, mode, tmp_path / "one", tiny_model_dir, tmp_path)
    two, _ = _run(2, mode, tmp_path / "two", tiny_model_dir, tmp_path)
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


def test_two_process_training_keeps_ranks_identical(tiny_model_dir, tmp_path):
    rank0, rank1 = _run(2, "train", tmp_path / "train", tiny_model_dir, tmp_path)
    assert rank0["policy_checksum"] == rank1["policy_checksum"]
    assert rank0["prm_checksum"] == rank1["prm_checksum"]
    assert rank0["prm_wrapper"] == "DistributedDataParallel"
