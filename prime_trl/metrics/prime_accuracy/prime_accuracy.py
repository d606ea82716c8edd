"""`prime_accuracy`: PRIME's outcome verifiers as an `evaluate` metric, loadable from this local directory.

    import evaluate
    metric = evaluate.load("path/to/prime_trl/metrics/prime_accuracy")
    # or prime_trl.evaluation.load_accuracy_metric()
    metric.compute(predictions=["... \\\\boxed{42}"], references=["42"])                      # {"accuracy": 1.0, ...}
    metric.compute(predictions=[["... 41", "... \\\\boxed{42}"]], references=["42"])          # k samples per problem

The hub-hosted `evaluate` metrics cannot be downloaded everywhere; a local module can. Scoring is done by
`prime_trl.verifiers` (math: answer extraction + math-verify; code: sandboxed APPS tests), the metrics by
`prime_trl.evaluation`.
"""

import datasets
import evaluate

from prime_trl import evaluation

_DESCRIPTION = """PRIME accuracy: verifier-checked correctness of model completions (math answers, code tests).
With one completion per problem it returns `accuracy` (pass@1) and `mean_score` (code keeps partial credit);
with a list of n completions per problem also the unbiased pass@k (k = 1, 2, 4, ..., n) and maj@n."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: a completion per problem, or a list of n completions per problem (the same n for all).
    references: the ground truth of each problem (math: the answer; code: APPS JSON {"inputs", "outputs"}).
    abilities: optional "math" or "code" per problem (default "math" for all), selecting the verifier.
    data_sources: optional source name per problem; metrics are also reported per source.
Returns:
    accuracy (pass@1, averaged over samples), mean_score, pass@k, maj@n (multi-sample only), and
    `per_source` when `data_sources` is given.
"""

_CITATION = """@article{cui2025prime, title={Process Reinforcement through Implicit Rewards},
author={Cui, Ganqu and others}, journal={arXiv preprint arXiv:2502.01456}, year={2025}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrimeAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                   "references": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, abilities=None, data_sources=None):
        multi = bool(predictions) and not isinstance(predictions[0], str)
        samples = [list(p) for p in predictions] if multi else [[p] for p in predictions]
        abilities = abilities or ["math"] * len(references)
        sources = data_sources or ["all"] * len(references)
        rows = [{"prompt": "", "ground_truth": gt, "ability": a, "data_source": s}
                for gt, a, s in zip(references, abilities, sources)]
        table, _ = evaluation.evaluate_completions(rows, samples)
        overall = dict(table[evaluation.ALL_SOURCES])
        overall.pop("num_problems", None)
        result = {"accuracy": overall.pop("pass@1"), **overall}
        if not multi:  # maj@1 is the accuracy itself
            result = {k: v for k, v in result.items() if not k.startswith("maj@")}
        if data_sources:
            result["per_source"] = {s: row for s, row in table.items() if s != evaluation.ALL_SOURCES}
        return result
