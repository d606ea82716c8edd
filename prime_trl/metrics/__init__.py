"""Local `evaluate` metric modules (load them by path; see `prime_trl.evaluation.load_accuracy_metric`)."""
