"""Fine-tune the embedded SmolLM2-135M with TRL's SFTTrainer, LoRA and lemo's token elimination, on CPU.

    .venv/bin/pip install -e ".[trl]"   # or `make install`
    .venv/bin/python examples/trl_sft.py

A few steps on key-value retrieval rows (prompt: a long context with facts; completion: the answers), loss on
the completion only. Label priority keeps the completion's blocks; `lemo/kept_fraction` in the logs shows how
much of each sequence the decoder layers actually processed.
"""

import logging
import tempfile

import datasets
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

import lemo
from lemo.assets import austen_split, smollm2_dir
from lemo.eval.tasks import training_records
from lemo.integrations import LemoCallback

SEQ_LEN = 256  # short, so CPU steps stay short; lemo pays off from a few thousand tokens up

logging.basicConfig(level=logging.INFO, format="%(message)s")
torch.manual_seed(0)
path = smollm2_dir()
tokenizer = AutoTokenizer.from_pretrained(path)
novels, _ = austen_split()
rows = training_records("multikey", novels, tokenizer, seq_len=SEQ_LEN, n_rows=8, keys_per_row=2)

model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
# The default 64-token blocks would leave 4 blocks of a 256-token row: smaller ones give the selection a choice.
lemo.apply(model, lemo.SparsityConfig(block_size=16))
args = SFTConfig(
    output_dir=tempfile.mkdtemp(prefix="lemo-trl-"),
    max_steps=3,
    per_device_train_batch_size=1,
    learning_rate=2e-4,
    logging_steps=1,
    completion_only_loss=True,
    max_length=SEQ_LEN,
    report_to="none",
    use_cpu=True,
    bf16=False,  # SFTConfig's default; bf16 autocast on CPU is many times slower than fp32
    save_strategy="no",
)
trainer = SFTTrainer(
    model=model,
    args=args,
    train_dataset=datasets.Dataset.from_list(rows),
    processing_class=tokenizer,
    peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
)
LemoCallback.attach(trainer)  # first in line, so reporters (wandb, tensorboard) see the lemo/* keys too
trainer.train()
for layer, s in lemo.stats(trainer.model).items():
    print(f"layer {layer}: kept {s['kept_fraction']:.2f} of the tokens")
