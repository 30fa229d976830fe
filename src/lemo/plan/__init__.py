"""`lemo plan`: predicted GPU peak, pinned host memory and step time of a training step, before any weight loads.

    from lemo.plan import PlanConfig, predict
    plan = predict(PlanConfig(shape="llama3-8b", seq_len=131072, gradient_checkpointing=True))
    print(plan.format()); plan.fits; plan.advice

The formulas and their validation against the committed benchmarks are in docs/plan.md.
"""

from lemo.config import PlanConfig
from lemo.plan.core import Plan, check_fits, explain_oom, longest_seq_len, predict
from lemo.plan.shapes import SHAPES, ModelShape, resolve_shape

__all__ = [
    "SHAPES",
    "ModelShape",
    "Plan",
    "PlanConfig",
    "check_fits",
    "explain_oom",
    "longest_seq_len",
    "predict",
    "resolve_shape",
]
