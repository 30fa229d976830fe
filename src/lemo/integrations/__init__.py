"""Third-party training-library glue. `LemoCallback` (HF Trainer / TRL) loads transformers' Trainer only when
asked for, so `import lemo` stays light."""

from typing import Any

__all__ = ["LemoCallback", "ensure_outermost"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lemo.integrations import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'lemo.integrations' has no attribute {name!r}")
