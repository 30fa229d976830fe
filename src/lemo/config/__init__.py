"""Every configuration class of lemo, and the one way they are loaded (`from_dict`, `load_yaml`).

The bottom layer: nothing here imports the rest of lemo (or torch), so any layer may import a config, and
`import lemo` stays light. Each class validates itself in `__post_init__`, with messages that name the fix in the
spelling a user types (Python keyword or CLI flag), because a bad value found half an hour into a run is the most
expensive kind of error.

    sparsity.py   SparsityConfig: how each sparse layer chooses and uses its token blocks (`lemo.apply`)
    lora.py       LoraSettings: the adapter, shared by `lemo finetune` and `lemo plan`
    finetune.py   FinetuneConfig: `lemo finetune`
    plan.py       PlanConfig: `lemo plan`
    predictor.py  PredictorConfig (one predictor's shape), PredictorTrainingConfig (how calibration trains them)
    calibrate.py  CalibrateConfig: `lemo calibrate`
    eval.py       EvalConfig: `lemo eval`; DataConfig: `lemo data`
    suite.py      SuiteConfig: the capability suite's difficulty knobs
    bench.py      BenchConfig: `lemo bench`
    flags.py      Flag: a field's command-line exceptions (`Annotated[T, Flag(...)]`), read by the CLI generator
                  (lemo.utils.argparser), and the parse functions of per-layer values and layer sets
    load.py       DictConfig (the shared base), from_dict, load_yaml and type coercion
    checks.py     the validation helpers; docs.py: field docs for help()
"""

from lemo.config.bench import BenchConfig
from lemo.config.calibrate import CalibrateConfig
from lemo.config.docs import document_fields, field_docs
from lemo.config.eval import DataConfig, EvalConfig
from lemo.config.finetune import FinetuneConfig
from lemo.config.flags import Flag
from lemo.config.load import DictConfig, from_dict, load_yaml
from lemo.config.lora import LoraSettings
from lemo.config.plan import PlanConfig
from lemo.config.predictor import PredictorConfig, PredictorTrainingConfig
from lemo.config.sparsity import PAPER_FIELDS, SparsityConfig
from lemo.config.suite import SuiteConfig

CONFIGS = (
    SparsityConfig,
    LoraSettings,
    FinetuneConfig,
    PlanConfig,
    PredictorConfig,
    PredictorTrainingConfig,
    CalibrateConfig,
    EvalConfig,
    DataConfig,
    SuiteConfig,
    BenchConfig,
)
"""Every config class, for tests and tools that walk them all."""

__all__ = [
    "CONFIGS",
    "PAPER_FIELDS",
    "BenchConfig",
    "CalibrateConfig",
    "DataConfig",
    "DictConfig",
    "EvalConfig",
    "FinetuneConfig",
    "Flag",
    "LoraSettings",
    "PlanConfig",
    "PredictorConfig",
    "PredictorTrainingConfig",
    "SparsityConfig",
    "SuiteConfig",
    "document_fields",
    "field_docs",
    "from_dict",
    "load_yaml",
]
