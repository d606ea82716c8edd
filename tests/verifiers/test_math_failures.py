"""A math verifier that fails is not a wrong answer: a worker pool that cannot start raises on the first
call, and an answer whose worker died scores None (counted, warned about).

Failures come from a stand-in `math_verify` package put first on the workers' import path: one that
cannot be imported, one whose verify kills its process on a chosen answer.
"""

import logging
import os

import pytest

from prime_trl.verifiers import MathVerifierUnavailable, make_math_reward

BROKEN = "raise ImportError(\"No module named 'antlr4'\")\n"
DIES_ON_666 = '''
import os


class LatexExtractionConfig:
    pass


class ExprExtractionConfig:
    pass


def parse(text, config, parsing_timeout=None):
    return [text.strip("$")]


def verify(gold, answer, timeout_seconds=None):
    if answer == ["666"]:
        os._exit(1)  # as a segfault in a C extension or the OOM killer would end it
    return gold == answer
'''


@pytest.fixture
def stand_in_math_verify(tmp_path, monkeypatch):
    def install(source: str) -> None:
        (tmp_path / "math_verify.py").write_text(source)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))

    return install


def test_a_pool_that_cannot_start_raises_on_the_first_call(stand_in_math_verify):
    stand_in_math_verify(BROKEN)
    reward = make_math_reward(workers=2)
    with pytest.raises(MathVerifierUnavailable, match=r"could not start.*ImportError: No module named 'antlr4'"):
        reward(["\\boxed{1}"], ["1"])  # even a batch the fast path could score: the pool starts first
    with pytest.raises(MathVerifierUnavailable, match="pip install"):
        reward(["\\boxed{1}"], ["1"])  # and it keeps saying so: never a row of scores


def test_an_answer_whose_worker_died_scores_none(stand_in_math_verify, caplog):
    stand_in_math_verify(DIES_ON_666)
    reward = make_math_reward(workers=1)
    logged = {}
    with caplog.at_level(logging.WARNING, logger="prime_trl.verifiers.math_verifier"):
        scores = reward(["\\boxed{666}", "\\boxed{2}", "\\boxed{3}"], ["1", "2", "1"], log_metric=logged.__setitem__)
    assert scores == [None, 1.0, 0.0]  # the next answer got a fresh worker
    assert logged["verifiers/math/infra_error"] == 1 / 3 and logged["verifiers/math/infra_errors_total"] == 1.0
    assert logged["verifiers/math/wrong"] == 1 / 3
    assert "died on 1 of 3 answers" in caplog.text
