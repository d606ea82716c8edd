"""`prime-trl <command> [args]`: a thin dispatcher; each command lives in `prime_trl/scripts/`.

Commands are imported only when called, so `prime-trl --help` stays fast and a command's heavy
imports (TRL, vLLM) never load for another.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("prime_trl.scripts.train", "train a policy with PRIME from a YAML config (TRL conventions)"),
    "demo": ("prime_trl.scripts.demo", "offline demo: synthetic arithmetic, tiny model, SFT then PRIME"),
    "eval": ("prime_trl.scripts.evaluate", "pass@1 / pass@k / maj@k of a model on a dataset"),
    "rerank": ("prime_trl.scripts.rerank", "best-of-N with the implicit PRM vs majority vote"),
    "visualize": ("prime_trl.scripts.visualize", "colour a response's tokens by process reward (HTML/PNG)"),
}


def _usage() -> str:
    lines = ["usage: prime-trl <command> [args]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `prime-trl <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"prime-trl: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
