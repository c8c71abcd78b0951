"""One JepaSFTTrainer run on tiny local data, for tests/test_trl_distributed.py (torchrun or plain python).

Usage: python tests/_trl_worker.py OUT_DIR PER_DEVICE_BATCH
"""

import json
import sys

from datasets import Dataset

from llm_jepa.trl import JepaSFTConfig, JepaSFTTrainer
from tests._factory import conv, make_tokenizer, tiny_llama

ROWS = [{"messages": conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}")}
        for w in ("dog", "truck", "ring", "lake") for n in (1, 2)]


def main(out: str, per_device: int) -> None:
    tok = make_tokenizer("chatml")
    args = JepaSFTConfig(output_dir=out, per_device_train_batch_size=per_device, max_steps=2, logging_steps=1,
                         learning_rate=1e-2, optim="sgd", lr_scheduler_type="constant", save_strategy="no",
                         report_to=[], seed=5, use_cpu=True, max_length=None, disable_tqdm=True,
                         jepa_lambda=1.0, predictors=2, stp_lambda=0.5)
    trainer = JepaSFTTrainer(model=tiny_llama(tok, seed=1), args=args, train_dataset=Dataset.from_list(ROWS),
                             processing_class=tok)
    trainer.train()
    trainer.save_model(out)
    if trainer.is_world_process_zero():
        logs = [x for x in trainer.state.log_history if "loss" in x]
        with open(f"{out}/losses.json", "w") as f:
            json.dump(logs, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
