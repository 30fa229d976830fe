"""HF `Trainer` / TRL `SFTTrainer` glue: a callback that logs what elimination keeps (no Trainer copies) and tells
lemo the step, for `SparsityConfig(dense_tail=...)`.

`LemoCallback` also makes sure lemo's loss forward is the outermost forward of the CausalLM when training
starts: TRL's SFTTrainer installs its fused LM head as an instance forward in its `__init__`, and when
`lemo.apply` ran before that, TRL's head would call the decoder directly and lemo would never see the labels
(no label priority, no kept-position loss). Re-stacking also unhooks lemo's forward from inside TRL's, so that
`lemo.remove` afterwards leaves TRL's head over the model as it was before `lemo.apply`.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from transformers import TrainerCallback

from lemo.integrations.transformers.loss import make_label_forward, make_loss_forward
from lemo.integrations.transformers.patch import (
    _ATTR,
    causal_lm,
    is_applied,
    mean_kept_fraction,
    set_step,
    unhook_lemo_forward,
)

log = logging.getLogger(__name__)


def ensure_outermost(model: nn.Module) -> bool:
    """Re-wrap the CausalLM's forward with lemo's when a later patch (TRL's fused LM head) wrapped lemo's.

    The later patch then wraps what lemo's forward wrapped, and `remove` restores it: lemo.apply, SFTTrainer,
    train, lemo.remove leaves TRL's head over the plain model. Returns whether it re-wrapped. A no-op when lemo
    is not applied or its forward is already outermost.
    """
    if not is_applied(model):
        return False
    base = causal_lm(model)
    applied = base.__dict__[_ATTR]
    current = base.__dict__.get("forward")
    if (
        current is None
        or getattr(current, "_lemo_forward", False)
        or current is applied.previous_model_forward
    ):
        return False
    config, state = applied.config, applied.state
    forward = None
    if config.segmented_loss:
        forward = make_loss_forward(base, getattr(base, applied.spec.decoder), config, state)
    elif config.label_priority:
        forward = make_label_forward(base, state)
    if not getattr(forward, "_lemo_forward", False):
        # lemo needs no model forward (or the LM head is not a plain Linear and the model's own loss runs), so
        # nothing of lemo's is inside the later patch; `remove` deletes the instance forward: have it put this back.
        applied.previous_model_forward = current
        return False
    if not unhook_lemo_forward(current, applied.previous_model_forward or type(base).forward.__get__(base)):
        log.warning(
            "lemo: a later patch wrapped lemo's forward in a way lemo cannot take apart; lemo's forward stays "
            "inside it, and lemo.remove(model) will remove that patch too."
        )
        return False
    # What `remove` puts back: the later patch, which now wraps the plain model.
    applied.previous_model_forward = current
    base.forward = forward
    log.info("lemo: a later patch (TRL's fused LM head?) wrapped lemo's forward; lemo's is outermost again.")
    return True


class LemoCallback(TrainerCallback):
    """Logs `lemo/kept_fraction` (mean over decoder layers and over the steps since the last log) and, when
    `lemo.apply` was given predictors, `lemo/predictor_ms` (per step) and `lemo/predictor_param_mb`.

    Pass it as `callbacks=[LemoCallback()]`; reporters (wandb, tensorboard) run before user callbacks, so use
    `LemoCallback.attach(trainer)` instead for them to see these keys too.
    """

    def __init__(self) -> None:
        self._kept: list[float] = []
        self._steps = 0

    @classmethod
    def attach(cls, trainer: Any) -> LemoCallback:
        """Add a new LemoCallback to `trainer` ahead of every other callback (reporters included)."""
        callback = cls()
        trainer.callback_handler.callbacks.insert(0, callback)
        return callback

    def on_train_begin(self, args, state, control, model: nn.Module | None = None, **kwargs: Any) -> None:
        if model is not None:
            ensure_outermost(model)

    def on_step_begin(self, args, state, control, model: nn.Module | None = None, **kwargs: Any) -> None:
        if model is not None and is_applied(model) and state.max_steps > 0:
            set_step(model, state.global_step, state.max_steps)  # SparsityConfig.dense_tail's last steps

    def on_step_end(self, args, state, control, model: nn.Module | None = None, **kwargs: Any) -> None:
        if model is None or not is_applied(model):
            return
        self._steps += 1
        if causal_lm(model).__dict__[_ATTR].state.last:  # empty until a sparse training forward ran
            self._kept.append(mean_kept_fraction(model))

    def on_log(
        self, args, state, control, logs: dict[str, float] | None = None, model: nn.Module | None = None, **kw
    ) -> None:
        if logs is None or model is None or not is_applied(model) or not self._steps:
            return  # eval logs, the end-of-training summary: nothing new since the last train log
        extra: dict[str, float] = {}
        if self._kept:
            extra["lemo/kept_fraction"] = sum(self._kept) / len(self._kept)
        predictors = causal_lm(model).__dict__[_ATTR].predictors
        if predictors is not None and hasattr(predictors, "timings"):
            # The predictors' own cost, so users can check it stays a small share of the step.
            timing = predictors.timings()
            extra["lemo/predictor_ms"] = timing["seconds"] * 1000 / self._steps
            extra["lemo/predictor_param_mb"] = timing["param_bytes"] / 2**20
            predictors.reset_timings()
        logs.update(extra)
        if state.log_history:
            state.log_history[-1].update(extra)  # Trainer.log appended a copy of `logs` before calling us
        self._kept, self._steps = [], 0
