"""Math outcome reward: 1.0 iff the completion's final answer equals the reference (math-verify).

r_o^math ∈ {0, 1} (PRIME paper §4.1). Two steps:
* `extract_answer` (here, in the caller's thread, linear time): the last `\\boxed{}`/`\\fbox{}`
  (brace-matched), else "the answer is ...", else a trailing `$...$`; in the Eurus action format
  the text after the last `[OUTPUT]` is searched first.
* equivalence with math-verify, in a small pool of worker processes. math-verify bounds its own
  work with SIGALRM, which only works on a main thread, and some inputs (towers of powers) stall
  in C code where no signal handler runs. Each worker is a process whose main thread can use the
  alarm, and the caller kills a worker that misses the per-item deadline, scoring 0.0: the bound
  holds from any thread, TRL's async reward path included.

A verifier failure is not a wrong answer: a pool that cannot start raises `MathVerifierUnavailable`
on the first call, and an item whose worker died (rather than overran) scores None.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import Queue

from .text import completion_text

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 2000  # longer "answers" score 0.0 unparsed: no reference answer is that long

_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANSWER_PHRASE = re.compile(
    r"(?:final answer|answer)\s*(?:is|:|=)\s*(?:therefore\s*)?|answers are\s*", re.IGNORECASE
)
_TRAILING_MATH = re.compile(r"(\$\$?|\\\(|\\\[)([^$]*?)(\$\$?|\\\)|\\\])[\s.,;:!]*\Z", re.DOTALL)


def _braced(text: str, start: int) -> str | None:
    """Content of the `{...}` group opening at text[start], or None if unbalanced."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # `\{` and `\}` are literal braces, not grouping
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` or `\\fbox{...}` (also `\\boxed 5`)."""
    for m in reversed(list(_BOXED.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            content = _braced(text, i)
            if content is not None:
                return content
        elif i > m.end():  # `\boxed 5`: one token
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def _strip_math(answer: str) -> str:
    answer = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left):len(answer) - len(right)].strip()
    return answer


def _after_phrase(text: str) -> str | None:
    matches = list(_ANSWER_PHRASE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():].strip()
    rest = rest.split("\n")[0]
    rest = re.split(r"\.(?:\s|$)", rest)[0]  # up to the end of the sentence
    boxed = last_boxed(rest)
    return boxed if boxed is not None else (_strip_math(rest.rstrip(" .,;:!")) or None)


def extract_answer(text: str) -> str | None:
    """The final answer as models write it, or None."""
    regions = [text]
    if "[OUTPUT]" in text:  # Eurus action format: the answer belongs to the last [OUTPUT] step
        regions.insert(0, text[text.rfind("[OUTPUT]") + len("[OUTPUT]"):])
    for region in regions:
        for find in (last_boxed, _after_phrase):
            answer = find(region)
            if answer is not None and answer.strip():
                return answer.strip()
        m = _TRAILING_MATH.search(region[-MAX_ANSWER_CHARS * 2:])
        if m and m.group(2).strip():
            return m.group(2).strip()
    return None


def normalise_answer(answer: str) -> str:
    """Cheap canonical form for the exact-match fast path (never decides a mismatch)."""
    s = _strip_math(answer)
    boxed = last_boxed(s)
    s = boxed if boxed is not None else s
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("dfrac", "frac"),
                 ("tfrac", "frac"), (" ", "")):
        s = s.replace(a, b)
    return s.rstrip(".")


# ----------------------------------------------------------------------------- worker processes


def _worker_main() -> None:
    """Worker loop: one JSON request per line on stdin -> "1", "0" or "e" (unparsable, or math-verify
    raised) per line.
    The first line is "ready", or {"error": ...} if math-verify cannot be loaded."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library prints must not corrupt the protocol
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        config = [LatexExtractionConfig(), ExprExtractionConfig()]

        def equal(answer: str, gold: str, timeout: int) -> str:
            g = parse(f"${gold}$", config, parsing_timeout=timeout)
            a = parse(f"${answer}$", config, parsing_timeout=timeout)
            if not g or not a:
                return "e"  # math-verify could not read one of them
            return "1" if verify(g, a, timeout_seconds=timeout) else "0"

        if equal("1", "1", 1) != "1":  # also warms up sympy's caches before declaring ready
            raise RuntimeError("math-verify says 1 != 1")
    except Exception as e:  # noqa: BLE001 - tell the caller why, it raises
        proto.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        proto.flush()
        return
    proto.write("ready\n")
    proto.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            start = time.monotonic()
            reply = equal(req["a"], req["g"], req["t"])
            # math-verify answers False when its own alarm stops it: that is a timeout, not a wrong answer.
            if reply != "1" and time.monotonic() - start >= req["t"]:
                reply = "t"
        except Exception:  # noqa: BLE001 - math-verify raised: a parser error scores 0.0
            reply = "e"
        proto.write(reply + "\n")
        proto.flush()


class MathVerifierUnavailable(RuntimeError):
    """A math-verify worker process cannot start; the message says why and what to do."""


class _Worker:
    """One math-verify process; restarted after a crash or a missed deadline."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from prime_trl.verifiers.math_verifier import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        line = self._read_line(time.monotonic() + 120.0)
        if line != "ready":
            why = _start_failure(line, self.proc)
            self.close()
            raise MathVerifierUnavailable(
                f"math verifier: a math-verify worker ({sys.executable}) could not start, so no answer is "
                f"scored: {why}.\nFix: install math-verify in this environment "
                "(pip install 'math-verify[antlr4_13_2]') and check that `python -c 'import math_verify'` works."
            )

    def _read_line(self, deadline: float) -> str | None:
        """The next line, stripped; "" when the worker closed its end (died); None at the deadline."""
        fd = self.proc.stdout
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        return fd.readline().strip()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
            self.proc = None

    def start(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()

    def equal(self, answer: str, gold: str, timeout_s: float) -> str:
        """'1', '0', 'e' (parse error), 't' (math-verify's alarm or our deadline hit) or 'x' (the worker died)."""
        self.start()
        try:
            self.proc.stdin.write(json.dumps({"a": answer, "g": gold, "t": max(1, int(timeout_s))}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            self.close()
            return "x"
        reply = self._read_line(time.monotonic() + timeout_s * 2 + 1.0)  # math-verify parses twice
        if reply not in ("1", "0", "e", "t"):
            self.close()  # stalled in C code, or died: kill it, the next item restarts it
            return "t" if reply is None else "x"
        return reply


def _start_failure(line: str | None, proc: subprocess.Popen) -> str:
    """Why a worker did not say "ready", from its first line or its exit status."""
    if line:
        try:
            return str(json.loads(line).get("error", line))
        except (ValueError, AttributeError):
            return f"it said {line[:200]!r}"
    if line is None:
        return "it did not say it was ready within 120 s"
    return f"it exited with status {proc.wait()} before saying it was ready"


class MathVerifyPool:
    """`workers` math-verify processes used by at most `workers` threads at once."""

    def __init__(self, workers: int, timeout_s: float):
        self.workers, self.timeout_s = workers, timeout_s
        self._idle: Queue[_Worker] = Queue()
        for _ in range(workers):
            self._idle.put(_Worker())
        self._all = list(self._idle.queue)
        atexit.register(self.close)

    def start(self) -> None:
        """Start every worker now (raises MathVerifierUnavailable), in parallel: each imports sympy."""
        try:
            with ThreadPoolExecutor(max_workers=len(self._all)) as ex:
                list(ex.map(_Worker.start, self._all))
        except BaseException:
            self.close()  # the workers that did start
            raise

    def _one(self, pair: tuple[str, str]) -> str:
        worker = self._idle.get()
        try:
            return worker.equal(pair[0], pair[1], self.timeout_s)
        finally:
            self._idle.put(worker)

    def map(self, pairs: list[tuple[str, str]]) -> list[str]:
        if not pairs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(pairs))) as ex:
            return list(ex.map(self._one, pairs))

    def close(self) -> None:
        for w in self._all:
            w.close()


# ----------------------------------------------------------------------------- reward


def _gold_text(gold, row: int) -> str:
    if gold is None or isinstance(gold, (dict, list)):
        raise ValueError(f"row {row}: math ground_truth must be an answer string, got {type(gold).__name__}")
    gold = str(gold).strip()
    boxed = last_boxed(gold)
    return _strip_math(boxed if boxed is not None else gold)


# What a worker's reply says about the item; "x" items score None (the verifier failed, not the answer).
_OUTCOME_OF_REPLY = {"1": "correct", "0": "wrong", "e": "parse_error", "t": "timeout", "x": "infra_error"}
OUTCOMES = ("correct", "wrong", "no_answer", "parse_error", "timeout", "infra_error")


def make_math_reward(timeout_s: float = 5.0, workers: int | None = None):
    """A TRL reward function: 1.0 if a completion's final answer equals `ground_truth`, else 0.0.

    timeout_s: bound on each item's math-verify work (the worker is killed after 2*timeout_s+1 s).
    workers: math-verify processes (default: min(4, CPU cores)), started on the first call, which
    raises `MathVerifierUnavailable` if they cannot start. An item whose worker died scores None.
    """
    n_workers = workers or min(4, os.cpu_count() or 1)
    pool: list[MathVerifyPool] = []  # created on first call: importing must not start processes
    lock = threading.Lock()
    infra_errors_total = [0]

    def math_reward(completions, ground_truth, log_metric=None, **kwargs) -> list[float | None]:
        if len(ground_truth) != len(completions):
            raise ValueError(f"math_reward: {len(completions)} completions but {len(ground_truth)} ground_truth")
        with lock:
            if not pool:  # a pool that cannot start stops the run now (and at every call), not at a hard answer
                new_pool = MathVerifyPool(n_workers, timeout_s)
                new_pool.start()
                pool.append(new_pool)
        scores: list[float | None] = [0.0] * len(completions)
        outcomes, pairs, slots = ["no_answer"] * len(completions), [], []
        for i, (completion, gold) in enumerate(zip(completions, ground_truth)):
            gold = _gold_text(gold, i)
            answer = extract_answer(completion_text(completion, row=i))
            if answer is None or len(answer) > MAX_ANSWER_CHARS:
                continue
            if normalise_answer(answer) == normalise_answer(gold):
                scores[i], outcomes[i] = 1.0, "correct"  # identical after cosmetic normalisation: no sympy
                continue
            pairs.append((answer, gold))
            slots.append(i)
        for i, reply in zip(slots, pool[0].map(pairs)):
            outcomes[i] = _OUTCOME_OF_REPLY[reply]
            scores[i] = {"1": 1.0, "x": None}.get(reply, 0.0)
        failed = outcomes.count("infra_error")
        if failed:
            infra_errors_total[0] += failed
            logger.warning("math_reward: the math-verify worker died on %d of %d answers (scored None, %d so far "
                           "in this process)", failed, len(outcomes), infra_errors_total[0])
        if log_metric is not None:
            for name in OUTCOMES:  # fraction of this call's completions
                log_metric(f"verifiers/math/{name}", outcomes.count(name) / max(len(outcomes), 1))
            log_metric("verifiers/math/infra_errors_total", float(infra_errors_total[0]))
        return scores

    math_reward.__name__ = "math_reward"
    return math_reward


math_reward = make_math_reward()
