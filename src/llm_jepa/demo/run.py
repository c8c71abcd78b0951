"""``llm-jepa demo``: offline, on a CPU, train a tiny model with and without LLM-JEPA and compare.

Steps: generate NL-RX-style data (or read ``--data``), build a tiny Llama and its tokenizer (or start
from a pretrained ``--model``, e.g. ``smollm2-135m-instruct``, whose untrained diagnostics are
reported beside the arms'), train every arm (the named cells of a sweep grid, :func:`demo_sweep`)
with the same seed and data order, evaluate (exact match, startswith, regex equivalence), run the
collapse diagnostics on held-out views, then print a side-by-side table and write ``report.md``
with loss curves (``losses.png``) and every number (``results.json``).
Arms already trained or evaluated in the output directory are reused, so a rerun resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import CONTROL, PATH, SPEED

if TYPE_CHECKING:
    from ..sweep.grid import Run, Sweep

__all__ = ["DemoConfig", "ARMS", "run_demo", "demo_sweep", "fields_with"]

#: arm name -> training overrides on top of the common settings: the named cells of the demo's grid
#: (:func:`demo_sweep`). ``equal_compute`` arms train for as many steps as the JEPA arm's FLOPs allow
#: (the paper's same-FLOPs comparison, :data:`EQUAL_COMPUTE`).
ARMS: dict[str, dict[str, Any]] = {
    "baseline": {"regular": True, "monitor_views_every": 10},
    "jepa": {"predictors": 1, "jepa_lambda": 1.0},
    "baseline_equal_compute": {"regular": True, "monitor_views_every": 10},
    "jepa_sigreg": {"predictors": 1, "jepa_lambda": 1.0, "sigreg_weight": 0.1},
    "jepa_infonce": {"predictors": 1, "jepa_lambda": 0.5, "distance": "infonce"},
    # Semantic Tube Prediction on plain fine-tuning (no views, no extra token), the STP paper's lambda
    "stp": {"regular": True, "monitor_views_every": 10, "stp_lambda": 0.02},
}
DEFAULT_ARMS = ["baseline", "jepa", "baseline_equal_compute"]
#: arm -> the arm whose training FLOPs it spends; its steps are counted from the FLOPs both that arm
#: and the baseline (trained with its own settings) logged, so it trains after them
EQUAL_COMPUTE = {"baseline_equal_compute": "jepa"}
#: the numbers of the arms finished so far, while a demo runs; results.json (a whole demo's) is only
#: replaced at the end, so a stopped rerun never leaves less than the run before it
PARTIAL = "results.partial.json"


#: a DemoConfig field's role beside the training options' (``llm_jepa.options``: ``control``, ``speed``,
#: ``path``): it names which cells of the demo's grid run; each arm is checked on its own, so a rerun
#: may add or drop arms
CELLS = "cells"


def _roles(*roles: str) -> dict[str, frozenset[str]]:
    """A DemoConfig field's metadata: its roles, declared once; every list of "options that ..."
    of the demo is derived from them (:func:`fields_with`)."""
    return {"roles": frozenset(roles)}


def fields_with(*roles: str, cls: type | None = None) -> tuple[str, ...]:
    """The fields of ``cls`` (default :class:`DemoConfig`) that have any of ``roles``, in declaration order."""
    return tuple(f.name for f in fields(cls or DemoConfig) if f.metadata.get("roles", frozenset()) & set(roles))


@dataclass
class DemoConfig:
    output: str = field(default="demo_output", metadata=_roles(PATH))
    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 1e-3
    n_train: int = 8000
    n_test: int = 400
    size: str = "tiny"
    vocab_size: int = 512
    seed: int = 82
    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS), metadata=_roles(CELLS))
    data: str | None = field(default=None, metadata=_roles(PATH))  # a train JSONL instead of generated data
    test_data: str | None = field(default=None, metadata=_roles(PATH))
    n_analysis: int = 256
    max_new_tokens: int = 64
    overwrite: bool = field(default=False, metadata=_roles(CONTROL))
    model: str | None = None  # a pretrained model (name, folder or .gguf) instead of the tiny one
    lora: bool = False
    threads: int | None = field(default=None, metadata=_roles(SPEED))
    view_system: str = "default"
    #: learning rates to choose from before the arms run: the plain arm is trained at each and
    #: evaluated on ``n_validation`` rows of the training file held out from every training subset;
    #: all arms then train at the best one (``learning_rate`` is not used)
    tune_learning_rates: list[float] | None = None
    n_validation: int = 300
    #: delete an arm's checkpoints once it has finished (only its final model stays; a stopped arm
    #: keeps its checkpoint, so a rerun still resumes it)
    final_models_only: bool = field(default=False, metadata=_roles(SPEED))
    #: training recipe of every arm: llm-jepa's own (cosine, 5% warm-up, weight decay 0.1, answer labels)
    #: or "paper", the released code's (llm_jepa.protocols.DEMO_SETTINGS of its preset)
    protocol: str = "default"

    def __post_init__(self) -> None:
        """Numbers a run cannot work with are refused here, before anything is written (the demo
        would otherwise find them after its data, base model or a whole arm)."""
        import math

        for name in ("steps", "batch_size", "n_train", "n_test", "n_analysis", "max_new_tokens", "n_validation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, rates in (("learning_rate", [self.learning_rate]), ("tune_learning_rates", self.tune_learning_rates)):
            for rate in rates or []:
                if not (rate >= 0 and math.isfinite(rate)):
                    raise ValueError(f"{name} must be finite and >= 0, got {rate}")
        if self.tune_learning_rates is not None:
            names = {_rate_name(r) for r in self.tune_learning_rates}  # each rate's runs go to lr-<name>/
            if len(self.tune_learning_rates) < 2 or len(names) != len(self.tune_learning_rates):
                raise ValueError("tune_learning_rates needs at least two distinct learning rates (distinct in 6 "
                                 f"significant digits), got {self.tune_learning_rates}")
            if not self.data:
                raise ValueError("tuning the learning rate needs --data: its held-out rows come from that file")


#: the demo's defaults when it starts from a pretrained ``--model`` instead of the tiny one: a
#: fine-tuning rate (at 60 steps SmolLM2 learned something at 1e-4 and next to nothing at the paper's
#: 2e-5) and a batch a CPU can take; plain, LLM-JEPA and STP (STP costs what a plain step does), and
#: not the FLOPs-matched arm, which would cost 2.4x a plain arm more.
PRETRAINED_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-4, "batch_size": 8, "arms": ["baseline", "jepa", "stp"]}


def _prepare_data(cfg: DemoConfig, out: Path) -> tuple[Path, Path]:
    from ..toy.nlrx import make_splits, write_jsonl

    if cfg.data:  # with --test-data: checked by _check_inputs
        return _train_subset(Path(cfg.data), cfg.n_train, cfg.seed, out), Path(cfg.test_data)
    train_file, test_file = out / "data" / "train.jsonl", out / "data" / "test.jsonl"
    if not (train_file.exists() and test_file.exists()):
        train, test = make_splits(cfg.n_train, cfg.n_test, seed=cfg.seed)
        write_jsonl(train, train_file, overwrite=True)
        write_jsonl(test, test_file, overwrite=True)
    return train_file, test_file


def _permuted_rows(data: Path, seed: int) -> tuple[list[str], list[int]]:
    """The non-blank lines of ``data`` and a permutation of their indices drawn with ``seed``."""
    import random

    if not data.is_file():
        raise FileNotFoundError(f"{data}: no such training file")
    lines = [line for line in data.read_text().splitlines() if line.strip()]
    return lines, random.Random(seed).sample(range(len(lines)), len(lines))


def _write_rows(lines: list[str], keep: list[int], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines[i] + "\n" for i in sorted(keep)))  # in file order
    return path


def _train_subset(data: Path, n: int, seed: int, out: Path) -> Path:
    """``data`` itself, or when it has more than ``n`` rows a fixed subset of ``n`` (the first ``n``
    of a permutation drawn with ``seed``, kept in file order, so nested across ``n``) written to
    ``out/data/train.jsonl``: the low-data regime."""
    lines, order = _permuted_rows(data, seed)
    if len(lines) <= n:
        return data
    # the subsets of one seed are nested (500 rows lie within 2000), for a data-efficiency curve
    return _write_rows(lines, order[:n], out / "data" / "train.jsonl")


def _validation_rows(data: Path, n_train: int, n: int, seed: int) -> tuple[list[str], list[int]]:
    """The lines of ``data`` and the indices of its ``n`` held-out validation rows: taken from the
    *end* of the permutation whose first ``n_train`` are the training subset, so they lie outside
    every training subset of this seed up to ``len - n`` rows; a row whose text is also a training
    row (files hold exact duplicates) is skipped. Raises before anything is written when the file
    cannot hold both."""
    lines, order = _permuted_rows(data, seed)
    seen = {lines[i] for i in order[:n_train]}
    held = [i for i in reversed(order[n_train:]) if lines[i] not in seen][:n]
    if len(held) < n:
        raise ValueError(f"{data}: {len(lines)} rows cannot hold {n_train} training rows and {n} held-out "
                         f"validation rows apart; lower --n-train or --n-validation")
    return lines, held


def _validation_split(data: Path, n_train: int, n: int, seed: int, out: Path) -> Path:
    """:func:`_validation_rows` written to ``out/data/validation.jsonl`` in file order."""
    lines, held = _validation_rows(data, n_train, n, seed)
    return _write_rows(lines, held, out / "data" / "validation.jsonl")


def _require_chat_template(model: str) -> None:
    """The demo renders every example through the model's chat template: a base model without one
    (a converted GGUF base model, say) is refused before anything is written, not at its first arm."""
    from transformers import AutoTokenizer

    from ..realmodel import resolve_model_path

    if not getattr(AutoTokenizer.from_pretrained(resolve_model_path(model)), "chat_template", None):
        raise ValueError(f"{model}: the tokenizer has no chat template, and the demo renders every example through "
                         "one. Train such a model as plain text with `llm-jepa train --plain_text` and evaluate it "
                         "with `llm-jepa eval --plain-text`")


def _base_checkpoint(cfg: DemoConfig, out: Path, train_file: Path) -> Path:
    from ..data import load_examples
    from ..toy.tiny import build_checkpoint

    if cfg.model:
        from ..realmodel import resolve_model_path

        return Path(resolve_model_path(cfg.model))  # a named model or .gguf: converted once, cached
    base = out / "base"
    if not (base / "config.json").exists():
        texts = [m["content"] for ex in load_examples(train_file) for m in ex.messages]
        build_checkpoint(base, texts, seed=cfg.seed, size=cfg.size, vocab_size=cfg.vocab_size, overwrite=True)
    return base


def _ordered_arms(arms: list[str]) -> list[str]:
    """``arms`` with those that spend another arm's FLOPs last, after the arms they are counted from."""
    return [a for a in arms if a not in EQUAL_COMPUTE] + [a for a in arms if a in EQUAL_COMPUTE]


def _common_settings(cfg: DemoConfig, base: Path, train_file: Path) -> dict[str, Any]:
    """The training settings every arm shares but those that follow its steps (:func:`_schedule`)."""
    return {
        "model_name_or_path": str(base), "train_file": str(train_file), "per_device_train_batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate, "lr_scheduler_type": "cosine", "weight_decay": 0.1, "adam_beta2": 0.95,
        "max_grad_norm": 1.0,
        # one resumable checkpoint per arm: a pretrained model's (weights + optimizer state) is 1.6 GB for
        # SmolLM2-135M, and two per arm filled a disk during the protocol's runs
        "save_total_limit": 1,
        "seed": cfg.seed, "disable_tqdm": True, "overwrite": True, "max_length": 256,
        "dataloader_drop_last": True, "lora": cfg.lora, "threads": cfg.threads, "view_system": cfg.view_system,
    }


def _schedule(steps: int) -> dict[str, Any]:
    """An arm's settings that follow its steps (an equal-compute arm trains for more)."""
    return {"max_steps": steps, "warmup_steps": max(steps // 20, 1), "logging_steps": max(1, min(10, steps // 5)),
            "save_steps": max(steps // 2, 50)}


def demo_sweep(cfg: DemoConfig, base: Path, train_file: Path) -> Sweep:
    """The demo's arms as a sweep grid (:class:`llm_jepa.sweep.grid.Sweep`): the common settings and
    the ``--protocol`` recipe fixed, each of ``cfg.arms`` a named cell (:data:`ARMS`), the demo's one
    seed, and an arm of :data:`EQUAL_COMPUTE` spending its reference's FLOPs when the demo also trains
    that arm and the baseline (else it trains ``cfg.steps``). Each run of its expansion is one arm."""
    from ..protocols import demo_overrides
    from ..sweep.grid import BASELINE_ID, Sweep

    arms = _ordered_arms(cfg.arms)
    matched = {a: ref for a, ref in EQUAL_COMPUTE.items() if a in arms and {ref, BASELINE_ID} <= set(arms)}
    return Sweep(fixed={**_common_settings(cfg, base, train_file), **demo_overrides(cfg.protocol)},
                 arms={a: ARMS[a] for a in arms}, seeds=(cfg.seed,), equal_compute=matched, source="llm-jepa demo")


def _train_arm(cfg: DemoConfig, name: str, base: Path, train_file: Path, steps: int, out: Path) -> tuple[Path, bool]:
    """:func:`_train_run` of arm ``name`` of the demo's grid."""
    from ..sweep.grid import expand

    (run,) = expand(demo_sweep(replace(cfg, arms=[name]), base, train_file))
    return _train_run(cfg, run, steps, out)


def _train_run(cfg: DemoConfig, run: Run, steps: int, out: Path) -> tuple[Path, bool]:
    """Train ``run`` (an arm of :func:`demo_sweep`), or continue it, into ``out/runs/<arm>``; returns
    the run's folder and whether an earlier invocation had already trained it with these settings
    (then nothing was trained). The sweep's runner is not used: demo folders keep their own layout
    (``runs/<arm>/`` holding the model), which hours-long demos already have on disk."""
    from ..config import load_config
    from ..train import train
    from .progress import CALLBACK

    run_dir = out / "runs" / run.cell_id
    # the --protocol recipe (in the run's overrides) wins over the schedule's warm-up, the arm over both
    overrides = {**_schedule(steps), **run.overrides, "output_dir": str(run_dir)}
    same = _trained_with(run_dir, overrides)  # an arm trained with other settings (e.g. steps) is not reused
    if same and (run_dir / "train_results.json").exists():
        _keep_final_model_only(cfg, run_dir)
        return run_dir, True  # trained by an earlier invocation with these settings
    if same and any(run_dir.glob("checkpoint-*")):  # an interrupted earlier invocation: continue it
        overrides.update(resume=True, overwrite=False)
    train_cfg = load_config(None, overrides=overrides)
    train_cfg.callbacks = [CALLBACK]  # a progress bar per arm (not an override: it is no setting of the arm)
    cpu = time.process_time()
    train(train_cfg)  # overwrite: a stale arm is moved aside, not deleted
    # CPU time of this process (all threads): on a loaded machine wall time follows the load
    if run_dir.is_dir():
        (run_dir / TIMING).write_text(json.dumps({"cpu_seconds": time.process_time() - cpu}))
    _keep_final_model_only(cfg, run_dir)
    return run_dir, False


#: the demo's record of an arm's training cost, beside its model (a reused arm keeps its numbers)
TIMING = "demo_timing.json"


def arm_cpu_seconds(run_dir: Path) -> float:
    """CPU seconds the arm's training took when it was trained (nan for arms trained before this was kept)."""
    path = run_dir / TIMING
    return float(json.loads(path.read_text()).get("cpu_seconds", "nan")) if path.is_file() else float("nan")


def _keep_final_model_only(cfg: DemoConfig, run_dir: Path) -> None:
    """With --final-models-only, delete a finished arm's checkpoints (its final model is beside them)."""
    import shutil

    if not cfg.final_models_only or not (run_dir / "train_results.json").is_file():
        return
    for checkpoint in sorted(run_dir.glob("checkpoint-*")):
        shutil.rmtree(checkpoint)
        print(f"[demo] --final-models-only: deleted {checkpoint}", flush=True)


def trainer_time(run_dir: Path, steps: int) -> tuple[float, float]:
    """The Trainer's own runtime of an arm and its seconds per step. A resumed run's runtime is its
    last invocation's, over the steps that invocation trained (older runs do not say: all ``steps``).
    nan when the run has no summary record, and s/step nan when that invocation trained no step."""
    done = _metrics_log(run_dir, "summary")
    if not done:
        return float("nan"), float("nan")
    runtime, timed = float(done[-1]["train_runtime"]), int(done[-1].get("steps_trained", steps))
    return runtime, (runtime / timed if timed > 0 else float("nan"))  # resumed from its last step: nothing timed


#: demo options that change no result (their fields' roles): another value reuses what is there
NOT_SETTINGS = (CONTROL, SPEED, CELLS)


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """What a demo's results depend on. A marker written before an option existed holds that option
    at its default; the order of the tuned rates and the validation size without tuning change nothing."""
    full = {**asdict(DemoConfig()), **cfg}
    if full["tune_learning_rates"]:
        full["tune_learning_rates"] = sorted(full["tune_learning_rates"])
    else:
        full.pop("n_validation")
    ignored = fields_with(*NOT_SETTINGS)
    return {k: v for k, v in _absolute(full).items() if k not in ignored}


def _absolute(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its paths (its fields' ``path`` role) resolved, so that a rerun naming the same
    files from another working directory, or by a relative path, is the same demo (and reuses its
    arms); ``model`` too when it names a local file or folder (not a model name)."""
    from ..runrecord import resolved

    paths = fields_with(PATH)

    def local(k: str, v: Any) -> bool:
        return isinstance(v, str) and (k in paths or (k == "model" and bool(v) and Path(v).exists()))

    return {k: resolved(v) if local(k, v) else v for k, v in cfg.items()}


def _not_training_settings() -> tuple[str, ...]:
    """Training options that change no result (their fields' ``control`` and ``speed`` roles): an
    arm saved with another value (or before the option was set) is reused."""
    from ..config import CONTROL, SPEED, options_with

    return options_with(CONTROL, SPEED)


def _trained_with(run_dir: Path, overrides: dict[str, Any]) -> bool:
    """Whether the config a run saved holds every one of ``overrides`` (but its thread count).

    The demo's reuse test, not the sweep's run key (:func:`llm_jepa.sweep.runner.run_key`): demo
    folders hold no ``run.json``, so under the sweep's test every arm of an existing demo (hours of
    SmolLM2 training) would count as never run; the config ``train`` saved beside each arm is what
    they all have. Both leave out the same options, by their roles."""
    import yaml

    from ..runrecord import changes

    path = run_dir / "llm_jepa_config.yaml"
    saved = yaml.safe_load(path.read_text()) if path.is_file() else None
    keys = [k for k in overrides if k not in _not_training_settings()]
    return isinstance(saved, dict) and not changes(saved, overrides, keys,
                                                   lambda k, a, b: _same_path(k, a) == _same_path(k, b))


def _same_path(key: str, value: Any) -> Any:
    """The demo's paths resolved: arms saved by a demo that kept them relative (to the directory it
    ran from, which a rerun of the same command shares) are still recognised."""
    from ..config import LOCAL_PATHS
    from ..runrecord import resolved

    return resolved(value) if key in (*LOCAL_PATHS, "output_dir") else value


def _metrics_log(run_dir: Path, kind: str | None = None) -> list[dict]:
    from ..rundir import read_metrics

    return read_metrics(run_dir / "metrics.jsonl", kind)


def _training_flops(run_dir: Path) -> float:
    """Analytic training FLOPs of a run (monitoring views of a baseline excluded), from its step
    records only: each counts the FLOPs since the previous one; evaluation and summary records do not."""
    return sum(m.get("flops", 0.0) - m.get("monitor_flops", 0.0) for m in _metrics_log(run_dir, "train"))


def _equal_compute_steps(out: Path, steps: int, reference: str = "jepa") -> int:
    """Steps for a baseline to spend the ``reference`` arm's FLOPs (the paper's same-FLOPs comparison),
    at the cost per step the baseline arm logged over its ``steps``."""
    from ..compute import equal_compute_steps

    budget, base = _training_flops(out / "runs" / reference), _training_flops(out / "runs" / "baseline")
    if not budget or not base:
        return steps
    return equal_compute_steps(base / steps, budget=budget)


def _arm_steps(cfg: DemoConfig, run: Run, out: Path) -> int:
    """The steps of an arm: the demo's, or those that spend its compute reference's FLOPs."""
    if run.compute_reference is None:
        return cfg.steps
    return _equal_compute_steps(out, cfg.steps, EQUAL_COMPUTE[run.cell_id])


def _evaluate_arm(cfg: DemoConfig, run_dir: Path, test_file: Path, limit: int | None = None,
                  name: str = "eval") -> dict[str, Any]:
    from ..eval.generate import GenerationSettings
    from ..eval.runner import evaluate

    return evaluate(str(run_dir), test_file, task="regex", limit=limit or cfg.n_test, output=run_dir / name,
                    batch_size=64, generation=GenerationSettings(max_new_tokens=cfg.max_new_tokens), quiet=True,
                    similarity=False)  # the demo measures alignment itself in _diagnose


def _diagnose(cfg: DemoConfig, run_dir: Path, test_file: Path, **overrides: Any) -> dict[str, Any]:
    """Alignment and collapse of an arm's held-out views, built with the k (and every other view
    setting) the arm trained with; ``overrides`` for the base model, which trained none."""
    import torch.nn.functional as F

    from ..analysis.metrics import collapse_diagnostics, retrieval_accuracy
    from ..analysis.straightness import trajectory_straightness
    from ..data import load_examples
    from ..embeddings import encode_views
    from ..runs import load_run

    run = load_run(run_dir, **overrides)
    n = min(cfg.n_analysis, cfg.n_test)
    examples = load_examples(test_file, n)
    emb = encode_views(run.model, run.tokenizer, examples, view=run.view, batch_size=64)
    return {
        "predictors": run.view.predictors,
        "pred_code_cosine": F.cosine_similarity(emb.pred, emb.target, dim=-1).mean().item(),
        "code_collapse": collapse_diagnostics(emb.code),
        "retrieval": retrieval_accuracy(emb.pred, emb.target),
        "straightness": trajectory_straightness(run.model, run.tokenizer, examples, plain_text=run.plain_text,
                                                separator=run.view.separator,
                                                max_length=256, batch_size=64, seed=cfg.seed),
    }


def _rate_name(rate: float) -> str:
    return f"{rate:g}"


def _rate_folder(out: Path, rate: float) -> Path:
    """Where the arms trained at ``rate`` live when the demo tunes the rate (``out/lr-0.0001``)."""
    return out / f"lr-{_rate_name(rate)}"


def _tune_learning_rate(cfg: DemoConfig, out: Path, base: Path, train_file: Path, t0: float) -> dict[str, Any]:
    """Train the plain arm at every rate of ``cfg.tune_learning_rates`` and evaluate each on the
    held-out validation rows of the training file (never the test rows); the best exact match wins,
    a tie going to the smaller rate. The winner's plain arm is the baseline arm later: it is not
    trained twice."""
    val_file = _validation_split(Path(cfg.data), cfg.n_train, cfg.n_validation, cfg.seed, out)
    rates: dict[str, Any] = {}
    for rate in cfg.tune_learning_rates or []:
        print(f"[demo] {time.perf_counter() - t0:5.0f} s  tuning: baseline at learning rate {rate:g}", flush=True)
        run_dir, _ = _train_arm(replace(cfg, learning_rate=rate), "baseline", base, train_file, cfg.steps,
                             _rate_folder(out, rate))
        summary = _evaluate_arm(cfg, run_dir, val_file, limit=cfg.n_validation, name="eval-validation")
        exact = summary["metrics"]["exact"]
        rates[_rate_name(rate)] = {"learning_rate": rate, "run_dir": str(run_dir.relative_to(out)), "exact": exact["accuracy"],
                              "ci95": exact.get("ci95"), "n": exact.get("n")}
        print(f"[demo] {time.perf_counter() - t0:5.0f} s  tuning: learning rate {rate:g}: validation exact match "
              f"{exact['accuracy']:.3f}", flush=True)
    best = max(rates.values(), key=lambda r: (r["exact"], -r["learning_rate"]))
    print(f"[demo] tuning: every arm trains at learning rate {best['learning_rate']:g}", flush=True)
    return {"validation_file": str(val_file.relative_to(out)), "n_validation": cfg.n_validation, "rates": rates,
            "chosen": best["learning_rate"]}


def run_demo(cfg: DemoConfig, default_arms: bool = False) -> dict[str, Any]:
    """Run the whole demo; returns every number (also written to ``results.json``). ``default_arms``:
    ``cfg.arms`` are the defaults, not the user's choice, so a rerun of a folder keeps the arms it
    was made with (a change of the defaults must not train a new arm, hours with a real model).
    Every option is checked before anything is written; the output folder is locked while it runs."""
    from ..runrecord import OutputLock, check_output_name

    check_output_name(cfg.output)
    cfg = DemoConfig(**_absolute(asdict(cfg)))
    _check_inputs(cfg)
    with OutputLock(cfg.output, "demo"):  # a second demo (or a train --overwrite above it) is refused
        return _demo(_claim_folder(cfg, Path(cfg.output), default_arms))


def _check_inputs(cfg: DemoConfig) -> None:
    """Everything the demo reads, checked before it writes anything (a demo refused later left a
    ``demo_config.json`` that made the corrected command 'another demo')."""
    unknown = [a for a in cfg.arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
    if cfg.test_data and not cfg.data:
        raise ValueError("--test-data needs --data (without it the demo generates both its training and test rows)")
    if cfg.data and not cfg.test_data:
        raise ValueError("--data needs --test-data too (a held-out JSONL to evaluate on)")
    for flag, path in (("--data", cfg.data), ("--test-data", cfg.test_data)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file ({flag})")
    _check_batch_fits(cfg)
    if cfg.tune_learning_rates and cfg.data:  # a split the file cannot hold fails before anything is written
        _validation_rows(Path(cfg.data), cfg.n_train, cfg.n_validation, cfg.seed)
    if cfg.model:
        from ..modeling import check_model_path

        check_model_path(cfg.model)
        _require_chat_template(cfg.model)


def _check_batch_fits(cfg: DemoConfig) -> None:
    """Every arm trains with dataloader_drop_last: fewer training rows than one batch leave it no
    step. Said in the demo's own flags, before its folder, base model or data are written."""
    rows = cfg.n_train
    if cfg.data:  # the training subset is the file itself when it holds no more than --n-train rows
        rows = min(rows, len(_permuted_rows(Path(cfg.data), cfg.seed)[0]))
    if rows < cfg.batch_size:
        where = f" ({cfg.data} holds {rows})" if cfg.data and rows < cfg.n_train else ""
        raise ValueError(f"--n-train {cfg.n_train}{where}: {rows} training row(s) make no whole batch of "
                         f"--batch-size {cfg.batch_size} (each arm drops a partial batch); lower --batch-size "
                         f"to at most {rows} or raise --n-train")


#: the demo's record of what it ran, beside its outputs
MARKER = "demo_config.json"


def _claim_folder(cfg: DemoConfig, out: Path, default_arms: bool) -> DemoConfig:
    """Make ``out`` this demo's (locked by the caller): a folder that is not a demo, or a demo with
    other settings, is refused, or with ``overwrite`` moved aside whole (nothing of it, data or base
    model, is reused or deleted); then the record is written. Returns ``cfg`` (with the folder's
    arms when the arms were not chosen)."""
    from ..runrecord import changes, describe, entries, move_aside, write_json

    marker = out / MARKER
    previous = json.loads(marker.read_text()) if marker.is_file() else None
    if previous is None and entries(out):
        if not cfg.overwrite:
            raise FileExistsError(f"{out} is not empty and is not a demo output; choose another --output or "
                                  "--overwrite (which moves its contents aside)")
        print(f"[demo] --overwrite: {out} held no demo; its contents moved to {move_aside(out)}", flush=True)
    if default_arms and previous is not None and _settings(previous) == _settings(asdict(cfg)) \
            and previous.get("arms") and previous["arms"] != cfg.arms:
        print(f"[demo] arms as this folder was made with: {' '.join(previous['arms'])} (--arms changes them)", flush=True)
        cfg = replace(cfg, arms=list(previous["arms"]))
    differ = changes(_settings(previous), _settings(asdict(cfg))) if previous is not None else {}
    if differ:
        if not cfg.overwrite:
            raise FileExistsError(f"{out} holds a demo run with other settings ({describe(differ)}); pass --overwrite "
                                  "(which moves it aside) or another --output")
        # nothing made with the old settings (data, base model, arms) may be reused, nor deleted
        print(f"[demo] --overwrite: the previous demo (other settings) moved to {move_aside(out)}", flush=True)
    write_json(marker, asdict(cfg))
    return cfg


def _demo(cfg: DemoConfig) -> dict[str, Any]:
    """The demo's steps in its claimed, locked folder: data, base model, the learning rate (with
    --tune-lr), then every arm of its grid, trained (or reused) and evaluated, and the report."""
    from ..sweep.grid import expand
    from ..threads import set_threads
    from .report import write_results

    set_threads(cfg.threads)
    out, t0 = Path(cfg.output), time.perf_counter()
    train_file, test_file = _prepare_data(cfg, out)
    base = _base_checkpoint(cfg, out, train_file)
    results: dict[str, Any] = {"config": asdict(cfg), "arms": {}}
    earlier = _earlier_results(out)
    if cfg.model:  # a pretrained start is far from isotropic already: its numbers go beside the arms'
        results["base"] = {"diagnostics": _diagnose(cfg, base, test_file, predictors=ARMS["jepa"]["predictors"],
                                                     view_system=cfg.view_system)}
    cfg, runs_out = _tuned(cfg, results, out, base, train_file, t0)
    runs = expand(demo_sweep(cfg, base, train_file))
    for i, run in enumerate(runs, 1):
        results["arms"][run.cell_id] = _run_arm(cfg, run, runs_out, test_file, f"{i}/{len(runs)}", t0)
        if i < len(runs):  # a stopped demo keeps the numbers of the arms it finished
            write_results({**results, "seconds": time.perf_counter() - t0, "finished": False}, out, PARTIAL)
    _finish(results, out, earlier, t0)
    return results


def _tuned(cfg: DemoConfig, results: dict[str, Any], out: Path, base: Path, train_file: Path,
           t0: float) -> tuple[DemoConfig, Path]:
    """With --tune-lr, ``cfg`` at the rate chosen on held-out rows (recorded in ``results``) and the
    folder of the arms trained at it; else ``cfg`` and ``out``."""
    if not cfg.tune_learning_rates:
        return cfg, out
    results["tuning"] = _tune_learning_rate(cfg, out, base, train_file, t0)
    chosen = results["config"]["learning_rate"] = results["tuning"]["chosen"]
    return replace(cfg, learning_rate=chosen), _rate_folder(out, chosen)


def _run_arm(cfg: DemoConfig, run: Run, runs_out: Path, test_file: Path, which: str, t0: float) -> dict[str, Any]:
    """One arm of the demo's grid trained (or reused) in ``runs_out`` and evaluated: its results."""
    name, steps = run.cell_id, _arm_steps(cfg, run, runs_out)
    print(f"[demo] {time.perf_counter() - t0:5.0f} s  arm {which}: {name}, {steps} steps", flush=True)
    start = time.perf_counter()
    run_dir, reused = _train_run(cfg, run, steps, runs_out)
    runtime, s_per_step = trainer_time(run_dir, steps)
    # the training loop's own time, the same number whether this invocation trained the arm or reused it
    train_s = runtime if runtime == runtime else time.perf_counter() - start
    summary = _evaluate_arm(cfg, run_dir, test_file)
    arm = {"run_dir": str(run_dir.relative_to(cfg.output)), "steps": steps, "train_seconds": train_s,
           "reused": reused, "s_per_step": s_per_step, "cpu_seconds": arm_cpu_seconds(run_dir), "summary": summary,
           "diagnostics": _diagnose(cfg, run_dir, test_file), "log": _metrics_log(run_dir)}
    print(f"[demo] {time.perf_counter() - t0:5.0f} s  {name}: {'trained earlier' if reused else 'trained'} in "
          f"{train_s:.0f} s ({s_per_step:.2f} s/step), exact match {summary['metrics']['exact']['accuracy']:.3f}",
          flush=True)
    return arm


def _finish(results: dict[str, Any], out: Path, earlier: dict[str, Any], t0: float) -> None:
    """The demo's time, then results.json, report.md and losses.png, and where they are."""
    from .report import where_it_wrote, write_report

    results["seconds"] = time.perf_counter() - t0
    if all(arm["reused"] for arm in results["arms"].values()) and earlier.get("seconds"):
        # nothing trained now: the demo's time stays the run's that trained the arms, this one's beside it
        results["seconds"], results["rerun_seconds"] = earlier["seconds"], results["seconds"]
    results["finished"] = True
    write_report(results, out)
    (out / PARTIAL).unlink(missing_ok=True)
    for line in where_it_wrote(out):
        print(line, flush=True)


def _earlier_results(out: Path) -> dict[str, Any]:
    """The results.json an earlier finished invocation left in ``out`` ({} if none or unreadable)."""
    try:
        return json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def seed_changes(cfg: DemoConfig) -> list[str]:
    """What a demo's seed changes: a pretrained model starts from the same weights whatever the seed,
    and a data file's rows stay (the seed draws the training subset)."""
    return ((["the training subset drawn from the data file"] if cfg.data else ["the generated data"])
            + ([] if cfg.model else ["the model's initial weights"]) + ["the data order"])


def _arms_of_seeds(cfg: DemoConfig, out: Path) -> list[str]:
    """The arms of the ``seed-S`` demos already in ``out`` made with ``cfg``'s settings (the seed
    apart), so that seeds added without --arms train the arms the others have, not new defaults;
    ``cfg.arms`` when there are none. Seeds that disagree need --arms."""
    def same(marker: dict) -> bool:
        return {k: v for k, v in _settings(marker).items() if k not in ("seed", "output")} == \
            {k: v for k, v in _settings(asdict(cfg)).items() if k not in ("seed", "output")}

    found = {}
    for marker in sorted(out.glob("seed-*/demo_config.json")):
        previous = json.loads(marker.read_text())
        if same(previous) and previous.get("arms"):
            found[marker.parent.name] = list(previous["arms"])
    if len({tuple(a) for a in found.values()}) > 1:
        listed = "; ".join(f"{name}: {' '.join(arms)}" for name, arms in found.items())
        raise ValueError(f"{out}: the seeds were made with different arms ({listed}); name them with --arms")
    if found and next(iter(found.values())) != cfg.arms:
        arms = next(iter(found.values()))
        print(f"[demo] arms as the seeds in {out} were made with: {' '.join(arms)} (--arms changes them)", flush=True)
        return arms
    return list(cfg.arms)


def run_demo_seeds(cfg: DemoConfig, seeds: list[int], default_arms: bool = False) -> dict[str, Any]:
    """The demo once per seed (data, model init and training all follow the seed), in ``seed-S``
    folders under ``cfg.output``, then mean ± std of exact match per arm over the seeds and the
    paper's paired one-tailed t-test of each arm against the baseline (``seeds.md``, ``seeds.json``)."""
    from ..sweep.stats import cell_stats
    from .report import write_seeds_report

    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--seeds needs distinct seeds, got {seeds}")
    out = Path(cfg.output)
    ours = {"seeds.json", "seeds.md"}
    from ..runrecord import entries

    if not cfg.overwrite and any(not (p.name.startswith("seed-") or p.name in ours) for p in entries(out)):
        raise FileExistsError(f"{out} holds something other than per-seed demo runs; choose another --output")
    if default_arms:
        cfg = replace(cfg, arms=_arms_of_seeds(cfg, out))
    runs = []
    for seed in seeds:
        res = run_demo(replace(cfg, seed=seed, output=str(out / f"seed-{seed}")))
        for arm, r in res["arms"].items():
            runs.append({"cell_id": arm, "cell": {"arm": arm}, "baseline": arm == "baseline", "seed": seed,
                         "learning_rate": res["config"]["learning_rate"],
                         "summary": {"exact": r["summary"]["metrics"]["exact"]["accuracy"]}})
    stats = cell_stats(runs, "exact")
    summary = {"seeds": seeds, "stats": stats, "runs": runs, "seed_changes": seed_changes(cfg)}
    write_seeds_report(summary, out)
    return summary
