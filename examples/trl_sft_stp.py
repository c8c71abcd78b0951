"""SmolLM2-135M-Instruct fine-tuned with Semantic Tube Prediction through TRL's SFTTrainer.

A plain TRL SFT script, with two changes: the trainer class and ``stp_lambda``. Then ``llm-jepa eval``
reads the result with the settings it was trained with (llm_jepa_config.yaml beside the weights).

    pip install "llm-jepa[trl,real]"
    python examples/trl_sft_stp.py --data ../shared/datasets/synth_train.jsonl --out runs/trl-stp
    llm-jepa eval --model runs/trl-stp --data ../shared/datasets/synth_test.jsonl --output runs/trl-stp/eval
"""

import argparse

from datasets import load_dataset

from llm_jepa.trl import JepaSFTConfig, JepaSFTTrainer

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="smollm2-135m-instruct", help="a name llm-jepa knows, a path or a hub name")
parser.add_argument("--data", required=True, help="JSONL of {'messages': [...]} (or prompt/completion, or text)")
parser.add_argument("--out", default="runs/trl-stp")
parser.add_argument("--steps", type=int, default=100)
cli = parser.parse_args()

dataset = load_dataset("json", data_files=cli.data, split="train")
# keep the fields of the row's format (the other columns, e.g. a task's metadata, are not TRL's)
formats = (["messages"], ["prompt", "completion"], ["text"])
dataset = dataset.select_columns(next((f for f in formats if set(f) <= set(dataset.column_names)),
                                      dataset.column_names))
args = JepaSFTConfig(
    output_dir=cli.out,
    max_steps=cli.steps,
    per_device_train_batch_size=8,
    learning_rate=2e-5,
    max_length=512,
    logging_steps=10,
    save_strategy="no",
    report_to="none",
    jepa_lambda=0.0,  # no views: STP alone costs what a plain SFT step costs
    stp_lambda=0.02,  # the STP paper's weight
)
trainer = JepaSFTTrainer(model=cli.model, args=args, train_dataset=dataset)
trainer.train()
trainer.save_model()  # the weights, the tokenizer and llm_jepa_config.yaml
