"""prime-trl: PRIME (Process Reinforcement through Implicit Rewards) on Hugging Face TRL.

`prime_trl.core` holds the math and imports torch only; the trainer and config are loaded
lazily so that importing the core does not pull in TRL.
"""

__version__ = "0.1.0"

_LAZY = {
    "PRIMEConfig": "prime_trl.config",
    "PRIMETrainer": "prime_trl.trainer",
    "ImplicitPRM": "prime_trl.implicit_prm",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prime_trl' has no attribute {name!r}")


__all__ = list(_LAZY)
