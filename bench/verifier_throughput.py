"""Verifier throughput (completions/s) on this machine, with the default worker counts.

    python bench/verifier_throughput.py [--math N] [--code N]

Math: a mix of correct (boxed, phrased, Eurus [OUTPUT]), wrong, equivalent-but-different and
garbage completions. Code: APPS-style stdin problems with 5 tests each, a mix of passing,
failing, non-compiling and (1 in 16) looping programs, which cost their full per-test timeout.
Compare completions/s with your generation rate: the verifier must not be the step's bottleneck.
"""

import argparse
import json
import os
import time

from prime_trl.verifiers import make_code_reward, make_math_reward

MATH = [  # (completion, reference)
    ("Adding them up gives \\boxed{42}.", "42"),
    ("So the ratio is \\boxed{0.75}", "\\frac{3}{4}"),
    ("Therefore, the answer is $\\frac{\\sqrt{2}}{2}$.", "\\frac{\\sqrt2}{2}"),
    ("[ASSESS]\n\n...\n\n[OUTPUT]\n\nThe final answer is: $\\boxed{[0, 1)}$", "[0,1)"),
    ("The roots are \\boxed{\\{2, 3\\}}", "\\{3,2\\}"),
    ("\\boxed{17}", "19"),  # wrong
    ("We get \\boxed{x^2 - 1}", "(x-1)(x+1)"),
    ("I am not sure.", "5"),  # no answer
    ("}{\\boxed{ \\frac{ ", "5"),  # garbage
    ("The answer is 1,000.", "1000"),
]

PROGRAMS = [
    "a, b = map(int, input().split())\nprint(a + b)",  # passes
    "a, b = map(int, input().split())\nprint(a + b)",
    "a, b = map(int, input().split())\nprint(a + b)",
    "a, b = map(int, input().split())\nprint(a * b)",  # mostly fails
    "print(3)",  # partly passes
    "def f(:\n    pass",  # does not compile
    "import sys\nprint(sum(map(int, sys.stdin.read().split())))",
    "raise ValueError('no')",
]
LOOP = "while True:\n    pass"
TESTS = json.dumps({"inputs": [f"{k} {k + 2}\n" for k in range(1, 6)],
                    "outputs": [f"{2 * k + 2}\n" for k in range(1, 6)]})


def bench(name, reward, completions, ground_truth):
    reward(completions[:4], ground_truth[:4])  # start worker processes outside the timing
    start = time.perf_counter()
    scores = reward(completions, ground_truth)
    seconds = time.perf_counter() - start
    print(f"{name:5s} {len(completions):5d} completions in {seconds:7.2f} s = {len(completions) / seconds:8.1f}/s"
          f"   mean score {sum(scores) / len(scores):.3f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--math", type=int, default=1024)
    parser.add_argument("--code", type=int, default=64)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; default workers")
    math_items = [MATH[i % len(MATH)] for i in range(args.math)]
    bench("math", make_math_reward(), [c for c, _ in math_items], [g for _, g in math_items])
    programs = [LOOP if i % 16 == 15 else PROGRAMS[i % len(PROGRAMS)] for i in range(args.code)]
    completions = [f"Solution:\n```python\n{p}\n```" for p in programs]
    bench("code", make_code_reward(), completions, [TESTS] * len(completions))
    no_loop = [f"```python\n{PROGRAMS[i % len(PROGRAMS)]}\n```" for i in range(args.code)]
    bench("code*", make_code_reward(), no_loop, [TESTS] * len(no_loop))
    print("code* = the same mix without looping programs (timeouts dominate the mixed number)")


if __name__ == "__main__":
    main()
