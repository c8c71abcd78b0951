"""``llm-jepa bench``: what a JEPA step costs, measured side by side in one run.

Every strategy trains the same model from the same initial weights on the same batches, one
strategy after the other with one model on the device (several resident copies ran a 1B model
out of memory and made step times erratic on an H200); a strategy that runs out of memory is
recorded as ``OOM`` and the others still run. Reported per
strategy: step time (median and interquartile range), examples/s, real and padded tokens/s, peak
memory (CUDA: allocator peak; CPU: activation bytes saved for backward), and paired ratios against
their targets (see :mod:`llm_jepa.bench.report`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .report import paired_ratios, print_table, summarize

__all__ = ["BenchConfig", "STRATEGIES", "run_bench", "generation_bench", "describe_agreement"]

STRATEGIES = ("plain", "paper_3row", "paper_2row", "jepa_packed", "jepa_one_row", "loss_dropout_0.5",
              "loss_dropout_0.75", "stp")


@dataclass
class BenchConfig:
    model: str | None = None  # a checkpoint dir; default: a tiny Llama built locally
    data: str | None = None  # default: ../shared/datasets/synth_train.jsonl, else generated NL-RX
    steps: int = 10
    warmup: int = 2
    batch_size: int | None = None  # None: 32 on a GPU, 8 on CPU (a paper-style 3-row step at 32 takes ~100 s there)
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    device: str | None = None
    dtype: str = "auto"  # bfloat16 on GPU
    attn: str = "auto"  # auto: modeling.resolve_attention (flash_attention_2, else flex_attention on CUDA; sdpa on CPU)
    size: str = "tiny"
    model_config: str | None = None  # JSON of a transformers config: random weights of that shape (e.g. Llama-1B)
    max_length: int = 512  # the paper-style baselines pad every row to this length
    stretch: int = 1  # repeat each message's content this many times (longer sequences, for --plot)
    threads: int | None = None  # torch CPU threads (default: torch's choice)
    generation: bool = True
    gen_prompts: int = 64  # the evaluation's default batch size
    gen_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse counts that leave nothing to time (``--steps 0`` said "no median for empty data"
        after building the model), naming the flag."""
        for name, least in (("steps", 1), ("warmup", 0), ("batch_size", 1), ("max_length", 1), ("stretch", 1),
                            ("gen_prompts", 1), ("gen_tokens", 1)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")


def _default_data(cfg: BenchConfig, n: int) -> list:
    from ..data import example_from_row, load_examples

    shared = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "synth_train.jsonl"
    if cfg.data:
        examples = load_examples(cfg.data, n)
    elif shared.exists():
        examples = load_examples(shared, n)
    else:
        from ..toy.nlrx import generate_pairs

        examples = [example_from_row(r) for r in generate_pairs(n, seed=cfg.seed)]
    return [_stretched(e, cfg.stretch) for e in examples] if cfg.stretch > 1 else examples


def _stretched(example: Any, k: int) -> Any:
    """The same example with every message's content repeated k times: k-times longer sequences."""
    from ..data import example_from_row

    messages = [{"role": m["role"], "content": " ".join([m["content"]] * k)} for m in example.messages]
    return example_from_row({"messages": messages})


def _model(cfg: BenchConfig, examples: list, workdir: Path) -> tuple[Any, Any]:
    import torch

    from ..modeling import load_model, load_tokenizer, resolve_attention

    path = cfg.model
    if path is None:
        from ..toy.tiny import build_checkpoint

        path = str(workdir / f"bench_model_{cfg.size}")
        if not (Path(path) / "config.json").exists():
            texts = [m["content"] for ex in examples for m in ex.messages]
            build_checkpoint(path, texts, seed=cfg.seed, size=cfg.size, vocab_size=512, overwrite=True)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    attn = resolve_attention(cfg.attn, device, getattr(torch, dtype))
    tok = load_tokenizer(path)
    if cfg.model_config:
        return _model_from_config(cfg, tok, attn, getattr(torch, dtype), device), tok
    return load_model(path, tok, dtype=dtype, attn_implementation=attn).to(device), tok


def _model_from_config(cfg: BenchConfig, tok: Any, attn: str, dtype: Any, device: str) -> Any:
    """Random weights of the shape in ``cfg.model_config`` (a JSON of config fields with its
    ``model_type``), built directly on ``device``: a 1B model needs no checkpoint and no hub."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = json.loads(Path(cfg.model_config).read_text())
    if "model_type" not in fields:
        raise ValueError(f"{cfg.model_config}: field 'model_type' missing (e.g. \"llama\")")
    config = AutoConfig.for_model(**fields)
    if config.vocab_size < len(tok):
        raise ValueError(f"{cfg.model_config}: vocab_size {config.vocab_size} < the tokenizer's {len(tok)} tokens")
    config.pad_token_id, config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def _steppers(cfg: BenchConfig, tok: Any, model: Any, device: Any) -> dict[str, Any]:
    """strategy name -> function(model, plain_items, view_items) -> StepResult."""
    from ..collator import PackingCollator
    from ..modeling import resolve_pack_length
    from ..objective import ObjectiveConfig
    from .strategies import packed_step, paper_2row_step, paper_3row_step

    jepa, plain = ObjectiveConfig(), ObjectiveConfig(jepa_lambda=0.0)
    pad = tok.pad_token_id
    rows = PackingCollator(pad_token_id=pad, pack_length=resolve_pack_length(model, -1))
    one_row = PackingCollator(pad_token_id=pad, pack_length=0)
    # one collator per dropout strategy, kept across steps: its coin flips are seeded by
    # (seed, micro-batch index), as in training
    drop = {a: PackingCollator(pad_token_id=pad, pack_length=rows.pack_length, loss_dropout=a, seed=cfg.seed)
            for a in (0.5, 0.75)}
    from ..stp import StpConfig

    stp = StpConfig(weight=0.02)  # plain fine-tuning + STP, the STP paper's setting: no views
    stp_rows = PackingCollator(pad_token_id=pad, pack_length=rows.pack_length, stp=stp, seed=cfg.seed)
    stp_objective = ObjectiveConfig(jepa_lambda=0.0, stp=stp)
    return {
        "plain": lambda m, p, v: packed_step(m, p, rows, plain, device),
        "stp": lambda m, p, v: packed_step(m, p, stp_rows, stp_objective, device),
        "paper_3row": lambda m, p, v: paper_3row_step(m, v, jepa, device, pad, cfg.max_length),
        "paper_2row": lambda m, p, v: paper_2row_step(m, v, jepa, device, pad, cfg.max_length),
        "jepa_packed": lambda m, p, v: packed_step(m, v, rows, jepa, device),
        "jepa_one_row": lambda m, p, v: packed_step(m, v, one_row, jepa, device),
        "loss_dropout_0.5": lambda m, p, v: packed_step(m, v, drop[0.5], jepa, device),
        "loss_dropout_0.75": lambda m, p, v: packed_step(m, v, drop[0.75], jepa, device),
    }


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class SavedActivations:
    """Bytes of the tensors autograd saves for backward while active (parameters excluded): the
    activation memory of a step, measurable on CPU where there is no allocator peak counter.
    Storages are counted once however many views of them are saved."""

    def __init__(self, model: Any) -> None:
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def _pack(self, t: Any) -> Any:
        s = t.untyped_storage()
        if s.data_ptr() not in self.params:
            self.storages[s.data_ptr()] = s.nbytes()
        return t

    def __enter__(self) -> SavedActivations:
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    @property
    def mib(self) -> float:
        return sum(self.storages.values()) / 2**20


def _one_step(step: Any, model: Any, opt: Any, p_items: list, v_items: list, device: Any) -> dict[str, Any]:
    """Run and time one optimizer step; returns its record."""
    import torch

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t = time.perf_counter()
    with SavedActivations(model) as act:
        res = step(model, p_items, v_items)
    res.loss.backward()
    _sync(device)
    t_fb = time.perf_counter() - t  # collate + forward + backward: the part that scales with tokens
    opt.step()
    opt.zero_grad(set_to_none=True)
    _sync(device)
    return {"time": time.perf_counter() - t, "fwd_bwd": t_fb, "real": res.real_tokens, "padded": res.padded_tokens,
            "act": act.mib, "mem": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "views": res.has_views}


RECORD = ("time", "fwd_bwd", "real", "padded", "act", "mem", "views")


def _free(device: Any) -> None:
    """Give memory back between strategies, so that one strategy's cache does not press on the next
    (six resident copies made step times swing 20x on an H200; issue 17)."""
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def _run_strategy(cfg: BenchConfig, step: Any, model: Any, batches: list, device: Any) -> dict[str, list]:
    """Warm-up then timed steps of one strategy on ``model`` with a fresh optimizer; the records of
    the timed steps, plus ``first`` (the first step, which pays any compilation)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rec: dict[str, list] = {k: [] for k in (*RECORD, "first")}
    try:
        for i, (p_items, v_items) in enumerate(batches):
            r = _one_step(step, model, opt, p_items, v_items, device)
            if i == 0:
                rec["first"].append(r["time"])
            if i >= cfg.warmup:
                for k, v in r.items():
                    if v is not None:
                        rec[k].append(v)
    finally:
        model.zero_grad(set_to_none=True)
        del opt
    return rec


def _time_strategies(cfg: BenchConfig, model: Any, tok: Any,
                     examples: list) -> tuple[dict[str, dict[str, list]], dict[str, str]]:
    """Per strategy, per timed step: the raw records; and the strategies that ran out of memory.

    One model lives on the device: every strategy starts from the same initial weights, restored
    from a host copy, and trains with its own fresh optimizer, one strategy after the other; memory
    is freed in between. Step ``i`` of every strategy uses the same batch, so ratios pair steps.
    A strategy that runs out of memory is recorded as such and the others still run.
    """
    import torch

    from ..views import ViewBuilder, ViewConfig

    device = next(model.parameters()).device
    view_items = [ViewBuilder(tok, ViewConfig(predictors=1, max_length=cfg.max_length))(e) for e in examples]
    plain_items = [ViewBuilder(tok, ViewConfig(build_views=False, max_length=cfg.max_length))(e) for e in examples]
    steppers = _steppers(cfg, tok, model, device)
    names = [s for s in cfg.strategies if s in steppers]
    impl = getattr(model.config, "_attn_implementation", "") or ""
    if "flash" in impl and "paper_2row" in names:  # flash attention takes no dense 4D float mask
        names.remove("paper_2row")
        print(f"bench: paper_2row skipped under {impl} (it needs a dense 4D mask); compare it with --attn sdpa")
    B = cfg.batch_size
    starts = [(i * B) % max(len(examples) - B, 1) for i in range(cfg.warmup + cfg.steps)]
    batches = [(plain_items[lo : lo + B], view_items[lo : lo + B]) for lo in starts]
    initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # host copy
    model.train()
    rec, oom = {}, {}
    for n in names:
        model.load_state_dict(initial)
        try:
            rec[n] = _run_strategy(cfg, steppers[n], model, batches, device)
        except torch.OutOfMemoryError as e:
            oom[n] = str(e).splitlines()[0] if str(e) else "out of memory"
            print(f"bench: {n} ran out of memory ({oom[n]}); recorded as OOM, continuing", flush=True)
        _free(device)  # after the except block: the exception's frames no longer hold tensors
    model.load_state_dict(initial)
    return rec, oom


def generation_bench(model: Any, tok: Any, examples: list, n: int, max_new_tokens: int,
                     repeats: int = 3) -> dict[str, Any]:
    """Batched vs one-at-a-time greedy generation on the same prompts.

    The batched pass is short (about a second on CPU), so it runs once untimed and then ``repeats``
    times, and its median is used; the one-at-a-time pass runs once (it is many short calls).
    When the two disagree under half precision, :func:`_agreement_in_fp32` says whether it is rounding.
    """
    import statistics

    from ..eval import generate as gen

    prompts = [gen.render_prompt(tok, list(e.messages)) for e in examples[:n]]
    s = gen.GenerationSettings(max_new_tokens=max_new_tokens)
    device = next(model.parameters()).device

    def timed(fn: Any) -> tuple[float, Any]:
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        return time.perf_counter() - t, out

    batched = gen.generate(model, tok, prompts, s, batch_size=len(prompts))  # warm-up
    times = [timed(lambda: gen.generate(model, tok, prompts, s, batch_size=len(prompts)))[0] for _ in range(repeats)]
    t_single, single = timed(lambda: [gen.generate(model, tok, [p], s, batch_size=1)[0] for p in prompts])
    t_batched = statistics.median(times)
    differ = [i for i, (a, b) in enumerate(zip(batched, single, strict=True)) if a != b]
    out = {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "batched_s": t_batched, "single_s": t_single,
           "batched_runs_s": times, "speedup": t_single / t_batched, "same_outputs": not differ,
           "differing_prompts": len(differ), "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
           "fp32_same_outputs": None}
    if differ and out["dtype"] in ("bfloat16", "float16"):
        out["fp32_same_outputs"] = _agreement_in_fp32(model, tok, prompts, s, differ)
    out["agreement"] = describe_agreement(out)
    return out


def _agreement_in_fp32(model: Any, tok: Any, prompts: list[str], settings: Any, differ: list[int]) -> bool:
    """Batched (all prompts, same batch as before) vs one-at-a-time (the prompts that differed) in
    float32. Agreement there means the half-precision disagreement was rounding: near-tied logits
    that left padding's slightly different sums tip one way or the other. The one model is cast in
    place and cast back (bf16 -> fp32 -> bf16 is exact), so no second copy is held."""
    from ..eval import generate as gen

    dtype = next(model.parameters()).dtype
    model.float()
    try:
        batched = gen.generate(model, tok, prompts, settings, batch_size=len(prompts))
        return all(batched[i] == gen.generate(model, tok, [prompts[i]], settings, batch_size=1)[0] for i in differ)
    finally:
        model.to(dtype)


def describe_agreement(g: dict[str, Any]) -> str:
    """``same_outputs`` in words: a bare False does not say whether batching is broken."""
    if g["same_outputs"]:
        return "True"
    head = f"False in {g['dtype']} ({g['differing_prompts']}/{g['prompts']} prompts differ"
    if g["fp32_same_outputs"] is None:
        return head + "; a real difference: check the position ids / attention mask of left-padded rows, or the cache)"
    if g["fp32_same_outputs"]:
        return head + "; fp32: True -> numerical ties)"
    return head + "; fp32: False -> a real difference: check the position ids / attention mask of left-padded rows, " \
                  "or the cache)"


def run_bench(cfg: BenchConfig, workdir: str | Path = ".bench", json_path: str | Path | None = None,
              quiet: bool = False) -> dict[str, Any]:
    import platform

    import torch

    from ..threads import set_threads

    torch.manual_seed(cfg.seed)
    set_threads(cfg.threads)
    if cfg.batch_size is None:
        on_gpu = (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        cfg = replace(cfg, batch_size=32 if on_gpu else 8)
    workdir = Path(workdir)
    examples = _default_data(cfg, max(cfg.batch_size * (cfg.steps + cfg.warmup), cfg.gen_prompts))
    model, tok = _model(cfg, examples, workdir)
    device = next(model.parameters()).device
    import transformers

    result: dict[str, Any] = {
        "config": asdict(cfg),
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "threads": torch.get_num_threads()},
        "attention": getattr(model.config, "_attn_implementation", None),  # what cfg.attn resolved to
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    rec, oom = _time_strategies(cfg, model, tok, examples)
    result["strategies"] = {n: summarize(rec[n], cfg.batch_size) if n in rec else {"status": "OOM", "error": oom[n]}
                            for n in cfg.strategies if n in rec or n in oom}
    result["ratios"] = paired_ratios(rec)
    result["rounds"] = rec  # raw per-step records: every number above can be recomputed
    if cfg.generation:
        if result["attention"] == "flex_attention":  # decode as the evaluation does (it loads the default, sdpa);
            model.set_attn_implementation("sdpa")     # flex would recompile for the growing cache
        try:
            result["generation"] = generation_bench(model.eval(), tok, examples, cfg.gen_prompts, cfg.gen_tokens)
            result["generation"]["attention"] = model.config._attn_implementation
        except torch.OutOfMemoryError as e:
            result["generation"] = {"status": "OOM", "error": str(e).splitlines()[0] if str(e) else "out of memory"}
        _free(device)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    if not quiet:
        print_table(result)
    return result
