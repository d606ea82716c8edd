"""`prime-trl demo --output-dir DIR`: the offline demo; the stages live in `prime_trl.demo`."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    from prime_trl.demo import DemoArguments, run_demo

    (args,) = TrlParser((DemoArguments,)).parse_args_and_config(argv)
    run_demo(args)
    return 0
