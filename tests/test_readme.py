"""`.ci/run` must run the README's own install and test commands, so CI proves what the README says."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _section_commands(readme: str, heading: str) -> list[str]:
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_install_and_test_commands_in_order():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    ci_lines = [line.strip() for line in open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8")]
    commands = _section_commands(readme, "Install") + _section_commands(readme, "Test")
    assert commands, "README has no install/test commands"
    positions = [ci_lines.index(command) for command in commands]  # ValueError names a missing command
    assert positions == sorted(positions), "CI must install before it tests"
