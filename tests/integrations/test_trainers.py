"""Real HF `Trainer` and TRL `SFTTrainer` runs on a tiny random model with lemo's default config (CPU).

TRL and datasets are the `trl` extra: imported inside the tests marked `extra`, so this module collects (and its
other tests run) where they are missing; `make test` sets LEMO_REQUIRE_EXTRAS=1, which fails those tests instead.
"""

import pytest
import torch
from transformers import AutoTokenizer, Trainer, TrainingArguments

import lemo
from lemo.integrations import LemoCallback
from lemo.testing import tiny_model
from lemo.testing import with_lora as lora

T = 160
CFG = lemo.SparsityConfig(block_size=16)


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_trained(model, before, history):
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    after = _trainable(model)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    kept = [s["kept_fraction"] for s in lemo.stats(model).values()]
    assert kept and all(k < 1 for k in kept)
    logged = [h["lemo/kept_fraction"] for h in history if "lemo/kept_fraction" in h]
    assert logged and all(0 < k < 1 for k in logged)


def _args(tmp_path, cls=TrainingArguments, **kw):
    common = dict(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    return cls(**common, **kw)


def test_hf_trainer_trains_with_elimination(tmp_path):
    model = lora(tiny_model("llama")).train()
    lemo.apply(model, CFG)
    ids = torch.randint(0, 256, (8, T))
    rows = [{"input_ids": r, "labels": r.clone()} for r in ids]
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, gradient_accumulation_steps=2),
        train_dataset=rows,
        callbacks=[LemoCallback()],
    )
    before = _trainable(model)
    trainer.train()
    _assert_trained(model, before, trainer.state.log_history)


def test_num_items_in_batch_sets_the_divisor():
    # Trainer with gradient accumulation passes the token count of all micro-batches: the loss is a sum over
    # this one divided by that count, so the accumulated gradient is the mean over the whole step.
    model = tiny_model("llama").train()
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=1.0, block_size=16))
    ids = torch.randint(0, 256, (2, T))
    mean = model(input_ids=ids, labels=ids).loss
    scaled = model(input_ids=ids, labels=ids, num_items_in_batch=torch.tensor(4 * (T - 1)))
    torch.testing.assert_close(scaled.loss, mean / 2)


@pytest.fixture
def sft_rows(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    words = tok.convert_ids_to_tokens(torch.randint(1000, 5000, (8 * T,)).tolist())
    text = [tok.convert_tokens_to_string(words[i * T : (i + 1) * T]) for i in range(8)]
    return tok, [{"prompt": t, "completion": f" The answer is {i}."} for i, t in enumerate(text)]


def _sft(tmp_path, model_dir, sft_rows, *, apply_first: bool = True, callback: bool = True, evaluate=False):
    """A LoRA model of `model_dir` and a real TRL SFTTrainer on the prompt/completion rows (completion-only loss)."""
    import datasets
    import trl
    from transformers import AutoModelForCausalLM

    tok, rows = sft_rows
    model = lora(AutoModelForCausalLM.from_pretrained(model_dir)).train()
    if apply_first:  # the natural order; LemoCallback puts lemo's forward back on top of TRL's fused head
        lemo.apply(model, CFG)
    data = datasets.Dataset.from_list(rows)
    trainer = trl.SFTTrainer(
        model=model,
        args=_args(tmp_path, cls=trl.SFTConfig, completion_only_loss=True, max_length=T + 16),
        train_dataset=data,
        eval_dataset=data.select(range(2)) if evaluate else None,
        processing_class=tok,
        callbacks=[LemoCallback()] if callback else [],
    )
    return model, trainer


@pytest.mark.extra("trl", "datasets")
@pytest.mark.parametrize("apply_first", [True, False])
def test_trl_sft_trainer_trains_with_elimination(tmp_path, tiny_model_dir, sft_rows, apply_first):
    model, trainer = _sft(tmp_path, tiny_model_dir, sft_rows, apply_first=apply_first)
    if not apply_first:
        lemo.apply(model, CFG)
    before = _trainable(model)
    trainer.train()
    _assert_trained(model, before, trainer.state.log_history)
    assert any("mean_token_accuracy" in h for h in trainer.state.log_history)


def test_fused_flag_without_trl_names_the_fix():
    model = tiny_model("llama").train()
    lemo.apply(model, CFG)
    ids = torch.randint(0, 256, (1, T))
    with pytest.raises(ValueError, match="add_fused_lm_head"):
        model(input_ids=ids, labels=ids, fused_lm_head=True)


def test_callback_logs_predictor_time(tmp_path):
    class Timed:  # the predictors' timing interface, as `lemo.apply(..., predictors=...)` keeps it
        def __init__(self):
            self.resets = 0

        def timings(self):
            return {"seconds": 0.5, "param_bytes": 2**20}

        def reset_timings(self):
            self.resets += 1

    model = tiny_model("llama").train()
    lemo.apply(model, CFG)
    predictors = Timed()
    lemo.integrations.transformers.patch.causal_lm(model).__dict__["_lemo_applied"].predictors = predictors
    callback = LemoCallback()
    from transformers import TrainerControl, TrainerState

    state = TrainerState()
    state.log_history.append({"loss": 1.0})
    ids = torch.randint(0, 256, (1, T))
    model(input_ids=ids, labels=ids)
    callback.on_step_end(None, state, TrainerControl(), model=model)
    logs = {"loss": 1.0}
    callback.on_log(None, state, TrainerControl(), logs=logs, model=model)
    assert set(logs) == {"loss", "lemo/kept_fraction", "lemo/predictor_ms", "lemo/predictor_param_mb"}
    assert logs["lemo/predictor_ms"] == 500.0 and logs["lemo/predictor_param_mb"] == 1.0
    assert state.log_history[-1] == logs and predictors.resets == 1


@pytest.mark.extra("trl")
def test_trl_fused_head_loss_equals_lemo_segmented_loss_on_kept_positions():
    from trl.trainer.utils import add_fused_lm_head

    model = tiny_model("llama").train()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    # No label priority: labelled positions do get eliminated, and must leave TRL's loss and metrics.
    lemo.apply(model, lemo.SparsityConfig(block_size=16, keep_ratio=0.3, label_priority=False))
    ids = torch.randint(0, 256, (2, T))
    torch.manual_seed(1)
    ours = model(input_ids=ids, labels=ids).loss
    torch.manual_seed(1)  # the same random blocks
    fused = model(input_ids=ids, labels=ids, fused_lm_head=True)
    kept_rows = lemo.stats(model)[2]["kept_fraction"] * 2 * T
    assert 0 < fused.label_mask.sum() < 2 * (T - 1) and fused.label_mask.sum() <= kept_rows
    assert not fused.log_probs[~fused.label_mask].any() and not fused.is_top1[~fused.label_mask].any()
    torch.testing.assert_close(fused.loss, ours, rtol=1e-4, atol=1e-5)
    # The last layer trimmed to the scored rows (the default) gives TRL's head what the whole layer gives it.
    lemo.apply(
        model, lemo.SparsityConfig(block_size=16, keep_ratio=0.3, label_priority=False, trim_last_layer=False)
    )
    torch.manual_seed(1)
    whole = model(input_ids=ids, labels=ids, fused_lm_head=True)
    for name in ("log_probs", "entropy", "is_top1"):
        torch.testing.assert_close(fused[name], whole[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(fused.loss, whole.loss, rtol=1e-4, atol=1e-5)


@pytest.mark.extra("trl", "datasets")
@pytest.mark.parametrize("callback", [True, False])
def test_remove_after_sft_training_keeps_trls_fused_head(tmp_path, tiny_model_dir, sft_rows, callback):
    # lemo.apply, then SFTTrainer (which installs its fused LM head over lemo's forward), train, lemo.remove: the
    # model must be what TRL's head over the plain model is, so the same trainer can still evaluate it.
    model, trainer = _sft(tmp_path, tiny_model_dir, sft_rows, callback=callback, evaluate=True)
    trainer.train()
    lemo.remove(model)
    assert not lemo.integrations.transformers.patch.is_applied(model)
    ids = torch.randint(0, 256, (2, T))
    fused = model(input_ids=ids, labels=ids, fused_lm_head=True)  # TRL's head, now over the plain model
    logits = model(input_ids=ids).logits
    expected = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(fused.log_probs, expected, rtol=1e-4, atol=1e-5)
    plain = model(input_ids=ids, labels=ids)  # no lemo forward left underneath: the model's own loss, logits
    assert plain.logits is not None
    hf_loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(plain.loss, hf_loss, rtol=1e-4, atol=1e-5)
    assert "eval_loss" in trainer.evaluate()


@pytest.mark.extra("trl")
@pytest.mark.parametrize(
    "cfg",
    [CFG, lemo.SparsityConfig(block_size=16, segmented_loss=False, loss_tokens="all", label_priority=False)],
    ids=["segmented-loss", "no-model-forward"],
)
def test_restacking_then_remove_leaves_trls_head_over_the_plain_model(cfg):
    from trl.trainer.utils import add_fused_lm_head

    from lemo.integrations.trainer import ensure_outermost

    model = tiny_model("llama").train()
    ids = torch.randint(0, 256, (1, T))
    expected = model(input_ids=ids, labels=ids).loss
    lemo.apply(model, cfg)
    add_fused_lm_head(model)  # what SFTTrainer.__init__ does
    trl_forward = model.__dict__["forward"]
    assert ensure_outermost(model) == cfg.segmented_loss
    assert not ensure_outermost(model)  # once is enough
    lemo.remove(model)
    assert model.__dict__["forward"] is trl_forward
    assert model(input_ids=ids, labels=ids).loss == expected  # TRL's non-fused path: the model's own loss
    fused = model(input_ids=ids, labels=ids, fused_lm_head=True)
    torch.testing.assert_close(fused.loss, expected, rtol=1e-4, atol=1e-5)
