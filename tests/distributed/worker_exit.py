"""How every `accelerate launch` worker of these tests ends: write its rank's JSON, tear the group down, exit hard."""

import json
import os
import sys

import torch


def write_rank_result(accelerator, out_path: str, result: dict) -> None:
    """`result` to `out_path`.rank<N>.json, then the gloo group torn down while every rank is still alive
    (left to the destructors at interpreter exit, it can abort a rank)."""
    with open(f"{out_path}.rank{accelerator.process_index}.json", "w") as f:
        json.dump(result, f)
    accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def exit_skipping_teardown() -> None:
    """The results are written and the group is gone; the interpreter's own teardown of torch's C++ threads still
    aborted a rank about 1 run in 10 ("terminate called without an active exception"), so skip it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
