"""Peak RSS of `llm-jepa train --streaming true` on a generated 1M-row JSONL against a 10k-row one
(issue 26 §4; the goal is that they differ by less than 20%). Each run is its own process, so each
peak is that run's alone. Not a timed test: it prints one line per run.

    PYTHONPATH=src python scripts/bench_streaming.py [--rows 10000 1000000] [--eager-rows 10000 100000]

``--hf json saved`` measures Hugging Face datasets in streaming mode instead: the same rows as a folder
of JSONL files (``load_dataset(folder, streaming=True)``) and as a ``save_to_disk`` folder (memory-mapped,
``to_iterable_dataset``); the rows are written (and saved) in this process, before the measured runs.

    PYTHONPATH=src python scripts/bench_streaming.py --hf json saved --rows 10000 1000000
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = """
import resource, sys, time
from llm_jepa.config import load_config
from llm_jepa.train import train
t = time.perf_counter()
train(load_config(None, sys.argv[1:]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t)
"""


def write_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = ["dog", "truck", "ring", "lake", "vowel", "letter", "number", "string"]
    with path.open("w") as f:
        for i in range(n):
            w, k = rng.choice(words), rng.randint(1, 9)
            f.write(json.dumps({"messages": [
                {"role": "system", "content": "Convert natural language to regular expression."},
                {"role": "user", "content": f"lines with the string '{w}' at least {k} times ({i})"},
                {"role": "assistant", "content": f"(.*{w}.*){{{k},}}"}]}) + "\n")


def hf_dataset(jsonl: Path, kind: str) -> Path:
    """The rows of ``jsonl`` as a folder of one JSONL file, or saved with ``save_to_disk``."""
    folder = jsonl.with_suffix(f".{kind}")
    if not folder.exists():
        if kind == "json":
            folder.mkdir()
            (folder / "part-0.jsonl").symlink_to(jsonl)
        else:
            import datasets

            datasets.Dataset.from_json(str(jsonl), cache_dir=str(folder) + "-cache").save_to_disk(str(folder))
    return folder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="*", default=[10_000, 1_000_000])
    p.add_argument("--eager-rows", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--hf", nargs="*", choices=["json", "saved"], default=[],
                   help="streamed Hugging Face datasets (a JSONL folder, a save_to_disk folder) instead of --streaming "
                        "on a JSONL file and the in-memory runs")
    a = p.parse_args()
    from llm_jepa.toy.tiny import build_checkpoint

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ckpt = build_checkpoint(d / "ckpt", ["lines with the string dog (.*dog.*){3,}"] * 50)
        runs = ([(kind, n) for kind in a.hf for n in a.rows] if a.hf else
                [(streaming, n) for streaming, sizes in ((True, a.rows), (False, a.eager_rows)) for n in sizes])
        for streaming, n in runs:
            data = d / f"rows-{n}.jsonl"
            if not data.exists():
                write_rows(data, n)
            if streaming in ("json", "saved"):
                data = hf_dataset(data, streaming)
            args = ["--model", str(ckpt), "--data", str(data), "--output_dir", str(d / f"out-{n}-{streaming}"),
                    "--max_steps", str(a.steps), "--per_device_train_batch_size", "8", "--save_strategy", "no",
                    "--stp_lambda", "0.02", "--report_to", "none", "--disable_tqdm", "true",
                    "--streaming", str(bool(streaming)).lower(),
                    *(["--train_sampling_strategy", "sequential"] if streaming in ("json", "saved") else [])]
            out = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, check=True)
            rss, seconds = out.stdout.split()[-2:]
            print(f"streaming={streaming!s:5} rows={n:>9,}: peak RSS {float(rss):7.0f} MiB, "
                  f"{float(seconds):6.1f} s for {a.steps} steps (reading and checking included)", flush=True)


if __name__ == "__main__":
    main()
