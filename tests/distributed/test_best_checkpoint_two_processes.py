"""Best-model checkpoints under `accelerate launch` with two CPU processes: rank 0 publishes, rank 1 waits, and
both record the published path, load it at the end, and keep it through rotation."""

import json
import os
import subprocess
import sys

import pytest

from tests.distributed.test_two_processes import MULTI_PROCESS, ROOT, _errors, _free_port

pytestmark = pytest.mark.slow
WORKER = os.path.join(ROOT, "tests", "distributed", "checkpoint_worker.py")


@pytest.mark.parametrize("save_total_limit", ["1"])  # rotation and the end-of-run cleanup included
def test_both_ranks_record_and_load_the_published_best(tiny_model_dir, tmp_path, save_total_limit):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # launcher's folders
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *MULTI_PROCESS, "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", WORKER, str(tmp_path / "result"), tiny_model_dir, str(tmp_path / "run"),
           save_total_limit]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _errors(proc.stderr)
    ranks = [json.load(open(f"{tmp_path / 'result'}.rank{r}.json")) for r in range(2)]

    best = os.path.join(str(tmp_path / "run"), "out", "checkpoint-1")
    expected = ["checkpoint-1"] if save_total_limit == "1" else ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    for rank in ranks:
        assert rank["num_processes"] == 2
        assert rank["best_model_checkpoint"] == best  # rank 1 too, though rank 0 alone wrote and published it
        assert rank["checkpoints"] == expected
        assert rank["policy_equals_best"]
