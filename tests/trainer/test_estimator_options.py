"""PRIMEConfig refuses bad advantage-estimator, value-model and PRM-variant options with one-line errors."""

import pytest

from prime_trl.config import PRIMEConfig
from prime_trl.estimators import ADVANTAGE_ESTIMATORS
from prime_trl.prm import PLACEMENTS, PRM_LOSSES, PRM_REFERENCES, UPDATE_MODES
from tests.trainer.helpers import cpu_config


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(advantage_estimator="a2c"), "advantage_estimator='a2c' is not one of"),
        (dict(prm_ref_type="sft"), "prm_ref_type='sft' is not one of"),
        (dict(prm_loss_type="bon_acc"), "prm_loss_type='bon_acc' is not one of"),
        (dict(gae_gamma=0.0), "gae_gamma must lie in"),
        (dict(gae_lambda=1.5), "gae_lambda must lie in"),
        (dict(value_clip_range=0.0), "value_clip_range must be > 0"),
        (dict(value_learning_rate=-1.0), "value_learning_rate must be >= 0"),
        (dict(advantage_estimator="rloo_paper_eq5", gamma_outcome=0.9), "gamma_outcome must be 1"),
        (dict(advantage_estimator="grpo", multi_objective_aggregation="normalize_then_sum"), "sum_then_normalize"),
    ],
)
def test_bad_options_fail_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message) as error:
        cpu_config(tmp_path, **overrides)
    assert "\n" not in str(error.value)


def test_choices_come_from_the_implementations():
    fields = PRIMEConfig.__dataclass_fields__
    for name, implementation in [
        ("advantage_estimator", ADVANTAGE_ESTIMATORS), ("prm_ref_type", PRM_REFERENCES),
        ("prm_loss_type", PRM_LOSSES), ("prm_update", UPDATE_MODES), ("prm_placement", PLACEMENTS),
    ]:  # fmt: skip
        assert fields[name].metadata["choices"] == list(implementation), name
    assert fields["advantage_estimator"].default == "rloo" and fields["prm_ref_type"].default == "frozen"
    assert fields["prm_loss_type"].default == "ce"
