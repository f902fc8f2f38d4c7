"""GPU check: the runbook_7b LoRA SFT recipe on a randomly initialised Qwen2.5-7B-shaped model, then merge and generate.

    bench/gpu_check.sh                 # one GPU (H200): at most 10 minutes, writes bench/results/gpu-<date>.json
    SMOKE=1 bench/gpu_check.sh         # the same code path on CPU with a tiny config (--dry-run), JSON to a tmp dir

Every heavy step is a child process in its own process group (``mh_assets.procs``), stopped when it is done, fails
or runs past the time budget: the project's tiny tokenizer (``mh_assets.runners.build_tiny_model``), the random
model and a synthetic Chinese counselling dataset (``init``), ``swift sft`` with ``RECIPES["runbook_7b"]`` rendered
by ``SftRun.to_args``, ``swift export --merge_lora true`` and a timed greedy generation (``generate``).
Nothing is downloaded: configs are written inline and caches live in the work folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mh_assets.procs import child_env, inherited_env, start_group, stop_group
from mh_assets.recipes import RECIPES, MergeRun, SftRun
from mh_assets.swiftlog import parse_logging

RESULTS = Path(__file__).resolve().parent / "results"

# Qwen2.5-7B's shape (no download). The vocabulary stays 152064 although the tiny tokenizer has about 3k tokens:
# the embedding and LM-head matmuls cost what they cost on the real model; ids the tokenizer lacks are never fed in.
QWEN25_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "rope_theta": 1e6,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
# The smoke's tiny config: the same family; vocabulary just above the tiny tokenizer's size, as on the real model.
TINY = {**QWEN25_7B, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY |= {"num_key_value_heads": 2, "vocab_size": 3072}

# Dense bf16 peak (no sparsity) by GPU name; other GPUs need --peak-tflops.
PEAK_BF16_TFLOPS = {"H200": 989.0}
MFU_FORMULA = (
    "MFU = 6 * N * tokens_per_s_per_gpu / peak_bf16_flops, N = all parameters of the frozen base model. "
    "LoRA with gradient checkpointing costs about 6N FLOPs per token: forward 2N, forward recomputed by "
    "checkpointing 2N, backward through the frozen weights for activation gradients 2N (frozen weights get no "
    "weight gradients; the rank-8 adapters add under 1%). Attention-score FLOPs are not counted; the input "
    "embedding is a lookup but is counted in N."
)
PROMPT = "我最近总是失眠，白天上课也没精神，该怎么办？"


# --- synthetic dataset -------------------------------------------------------------------------------------------

SYSTEM = "你是一名温和、专业的心理咨询师，用共情和倾听回应来访者，帮助对方梳理感受，并给出小而具体的建议。"
WHEN = ["这两周", "开学以后", "换了工作之后", "和男朋友分手以后", "这个学期", "父母吵架以后", "搬到新城市以后"]
TROUBLE = [
    "失眠到凌晨三四点",
    "心情低落，对什么都提不起兴趣",
    "一想到上班就心慌",
    "控制不住地担心考试",
    "和家人一说话就吵架",
    "觉得自己什么都做不好",
    "一个人的时候会莫名其妙地想哭",
]
IMPACT = ["白天上课完全没精神", "工作效率变得很低", "朋友约我也不想出门", "吃饭也没什么胃口", "整个人都很累"]
OPENING = [
    "你好，{when}我总是{trouble}，{impact}。我不知道该怎么办。",
    "我想咨询一下，{when}我一直{trouble}，而且{impact}，这正常吗？",
    "最近压力特别大，{when}开始{trouble}，{impact}，我是不是出了什么问题？",
]
FOLLOW_UP = [
    "我试过早点睡觉，可还是{trouble}。",
    "其实我也不知道该跟谁说，怕别人觉得我矫情。",
    "你说得对，可是我一想到{when}发生的事，心里就很难受。",
    "我担心这样下去会影响{impact_short}，越想越焦虑。",
    "家里人总说是我想太多了，让我别胡思乱想。",
]
IMPACT_SHORT = ["学习", "工作", "和朋友的关系", "身体", "家里的气氛"]
EMPATHY = [
    "听起来这段时间你真的很辛苦，{trouble}这样的状态持续下来，任何人都会觉得疲惫。",
    "谢谢你愿意把这些说出来，能够说出来本身就需要勇气。",
    "你的担心是可以理解的，{when}生活里发生了不少变化，身心需要时间去适应。",
    "我能感觉到你心里有很多委屈和无力感，这些感受都是真实而重要的。",
]
REFLECT = [
    "你提到{impact}，这说明情绪已经在影响你的日常生活了，值得我们认真对待。",
    "一方面你很想让自己好起来，另一方面又好像找不到方向，这种拉扯会让人格外焦虑。",
    "你很在意别人的看法，所以很多话一直憋在心里，没有地方可以放下。",
]
SUGGEST = [
    "可以先从很小的事情做起：每天固定时间起床，白天晒二十分钟太阳，睡前一小时放下手机。",
    "试着每天花几分钟写下让你担心的事情，再写下其中哪些是你现在能做点什么的。",
    "当心慌出现的时候，可以试试慢慢地吸气四秒、停两秒、再呼气六秒，重复几次。",
    "找一个你信任的朋友或家人聊一聊，不需要对方给出答案，只是被听见就会好受一些。",
    "如果这种状态持续两周以上，并且明显影响了睡眠、饮食和学习工作，建议去医院精神心理科做一次评估。",
]
ASK = [
    "你愿意和我多说说{when}发生了什么吗？",
    "在这些感受里，现在让你最难受的是哪一部分？",
    "以前遇到类似的困难时，有什么方法曾经对你有过一点帮助？",
    "这周有没有哪个时刻，你感觉稍微轻松一点？",
]


def conversation(rng: random.Random) -> dict[str, Any]:
    """One counselling-style ``messages`` row: a system prompt and 2-6 exchanges filled from the templates."""
    slots = {
        "when": rng.choice(WHEN),
        "trouble": rng.choice(TROUBLE),
        "impact": rng.choice(IMPACT),
        "impact_short": rng.choice(IMPACT_SHORT),
    }
    messages = [{"role": "system", "content": SYSTEM}]
    for turn in range(rng.randint(2, 6)):
        user = rng.choice(OPENING if turn == 0 else FOLLOW_UP)
        parts = [rng.choice(EMPATHY), *rng.sample(REFLECT, 2), *rng.sample(SUGGEST, rng.randint(1, 3)), rng.choice(ASK)]
        messages += [
            {"role": "user", "content": user.format(**slots)},
            {"role": "assistant", "content": "".join(parts).format(**slots)},
        ]
    return {"messages": messages}


def write_dataset(path: Path, tokenizer: Any, min_tokens: int, max_length: int, seed: int = 0) -> dict[str, int]:
    """Rows of at most ``max_length`` tokens (chat template applied) until they hold ``min_tokens`` tokens."""
    rng = random.Random(seed)
    rows = tokens = 0
    with path.open("w", encoding="utf-8") as fh:
        while tokens < min_tokens:
            row = conversation(rng)
            n = len(tokenizer(tokenizer.apply_chat_template(row["messages"], tokenize=False))["input_ids"])
            if n <= max_length:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows, tokens = rows + 1, tokens + n
    return {"dataset_rows": rows, "dataset_tokens": tokens}


# --- children (run as ``python bench/gpu_check.py <name> SPEC.json``; they write SPEC["result"]) ----------------


def child_init(spec: dict[str, Any]) -> dict[str, Any]:
    """Probe torch/CUDA/flash-attn, write the random model with the tiny tokenizer, and the dataset."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    cuda = torch.cuda.is_available()
    if spec["gpu"] and not cuda:
        raise SystemExit("no CUDA device is visible: on a machine without a GPU run the smoke (--dry-run / SMOKE=1)")
    try:
        import flash_attn

        flash_attn_version = flash_attn.__version__ if cuda else None
    except ImportError:
        flash_attn_version = None
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    out = Path(spec["model_dir"])
    tokenizer.save_pretrained(out)
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen2Config(**spec["config"], bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, dtype=spec["dtype"])
    torch.manual_seed(0)
    torch.set_default_dtype(getattr(torch, spec["dtype"]))
    with torch.device("cuda" if spec["gpu"] else "cpu"):  # initialising 7.6B weights on the GPU takes seconds
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad)
    model.save_pretrained(out, max_shard_size="5GB")
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "flash_attn_version": flash_attn_version,
        "params": sum(p.numel() for p in model.parameters()),
        "tokenizer_vocab": len(tokenizer),
        **write_dataset(Path(spec["dataset"]), tokenizer, spec["min_tokens"], spec["max_length"]),
    }


def child_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the merged model with transformers and time a greedy generation of exactly ``new_tokens`` tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if spec["gpu"] else "cpu"
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(
        spec["model_dir"], dtype=getattr(torch, spec["dtype"]), device_map=device
    )
    load_s = time.perf_counter() - start
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(text, return_tensors="pt").to(device)
    n = spec["new_tokens"]

    def generate(k: int) -> Any:  # min_new_tokens: a random model's EOS must not end the timing early
        return model.generate(**inputs, max_new_tokens=k, min_new_tokens=k, do_sample=False)

    with torch.no_grad():
        generate(2)  # warm-up: kernels, caches
        if spec["gpu"]:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(n)
        if spec["gpu"]:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    new = out.shape[1] - inputs["input_ids"].shape[1]
    return {
        "generation_load_seconds": round(load_s, 2),
        "generation_prompt_tokens": inputs["input_ids"].shape[1],
        "generation_tokens": new,
        "generation_seconds": round(seconds, 3),
        "generation_tokens_per_s": round(new / seconds, 1),
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"init": child_init, "generate": child_generate}


# --- figures -----------------------------------------------------------------------------------------------------


def training_figures(logging_jsonl: Path) -> dict[str, Any]:
    """Steps, losses, peak memory and steady-state throughput from swift's ``logging.jsonl`` (logging_steps 1).

    The first step (CUDA warm-up, dataloader start) is left out of the timed window: tokens are those of steps
    2..N (``num_input_tokens_seen``), seconds the difference of swift's elapsed time
    (``train_speed(s/it)`` * step, measured from the start of training) between step 1 and step N.
    """
    points, memory = [], None
    for raw in logging_jsonl.read_text(encoding="utf-8").splitlines():
        entry = json.loads(raw) if raw.strip() else {}
        if "loss" in entry and "num_input_tokens_seen" in entry:  # a step's line, not the summary after training
            step = int(entry["global_step/max_steps"].split("/")[0])
            points.append((step, entry["train_speed(s/it)"] * step, entry["num_input_tokens_seen"]))
            memory = entry.get("memory(GiB)", memory)
    log = parse_logging(logging_jsonl)
    (step0, t0, n0), (step1, t1, n1) = points[0], points[-1]
    return {
        "steps_done": log.steps,
        "first_loss": log.first_loss,
        "last_loss": log.last_loss,
        "train_seconds": round(t1, 2),
        "timed_steps": f"{step0 + 1}-{step1}",
        "timed_tokens": n1 - n0,
        "timed_seconds": round(t1 - t0, 3),
        "tokens_per_s_per_gpu": round((n1 - n0) / (t1 - t0), 1),
        "swift_memory_gib": memory,
    }


def mfu(params: int, tokens_per_s: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation, see ``MFU_FORMULA``; ``None`` without a known peak (CPU, unknown GPU)."""
    return round(6 * params * tokens_per_s / (peak_tflops * 1e12), 4) if peak_tflops else None


def peak_tflops_for(gpu: str | None) -> float | None:
    return next((tflops for name, tflops in PEAK_BF16_TFLOPS.items() if gpu and name in gpu), None)


class MemorySampler(threading.Thread):
    """The largest ``nvidia-smi`` memory.used of one GPU, sampled every half second until ``stop``."""

    def __init__(self, gpu: str) -> None:
        super().__init__(daemon=True)
        self.gpu, self.peak_mib, self._done = gpu, 0, threading.Event()

    def run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", self.gpu]
        while not self._done.wait(0.5):
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
            if out.isdigit():
                self.peak_mib = max(self.peak_mib, int(out))

    def stop(self) -> float | None:
        self._done.set()
        self.join()
        return round(self.peak_mib / 1024, 2) if self.peak_mib else None


# --- the check ---------------------------------------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM or SIGINT reached the check."""


def stop(signum: int, _frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


class StepFailed(RuntimeError):
    def __init__(self, step: str, why: str, log: Path) -> None:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:] if log.exists() else []
        super().__init__(f"step {step} {why}")
        self.step, self.log_tail = step, "\n".join(tail)


@dataclasses.dataclass
class Runner:
    """Runs the check's children one after another under one deadline, each in its own process group."""

    work: Path
    env: dict[str, str]
    deadline: float
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def run(self, step: str, command: Sequence[str]) -> None:
        log = self.work / "logs" / f"{step}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[gpu_check] {step}: {' '.join(command)}", flush=True)
        start = time.monotonic()
        with log.open("w", encoding="utf-8") as fh:
            proc = start_group(command, self.env, cwd=str(self.work), stdout=fh, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise StepFailed(step, "ran past the time budget", log) from None
            except Stopped as exc:
                raise StepFailed(step, f"was stopped by {exc}", log) from None
            finally:
                stop_group(proc)  # also whatever it left behind (dataloader workers, swift's re-exec'd python)
                self.seconds[step] = round(time.monotonic() - start, 2)
        print(f"[gpu_check] {step}: exit {rc} after {self.seconds[step]} s", flush=True)
        if rc != 0:
            raise StepFailed(step, f"exited with {rc}", log)

    def child(self, step: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Run one of ``CHILDREN`` with ``spec``; return what it wrote."""
        spec_path, result_path = self.work / f"{step}.spec.json", self.work / f"{step}.result.json"
        spec_path.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
        self.run(step, [sys.executable, str(Path(__file__).resolve()), name, str(spec_path)])
        return json.loads(result_path.read_text(encoding="utf-8"))


def versions() -> dict[str, str | None]:
    found = {}
    for key, dist in {"transformers": "transformers", "ms_swift": "ms-swift", "peft": "peft"}.items():
        try:
            found[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[key] = None
    return found


def run_check(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole check in ``work``. A failed step ends it: the result then says ``ok: false``, why, and the step's
    log tail, next to everything measured before."""
    gpu = not args.dry_run
    cuda_devices = args.cuda_device if gpu else ""  # the smoke hides any GPU: it is the CPU run of the same path
    env = inherited_env() | child_env(cuda_devices, work)
    env |= {
        "MODELSCOPE_CACHE": str(work / "cache" / "modelscope"),
        "HF_HOME": str(work / "cache" / "huggingface"),
        "MPLCONFIGDIR": str(work / "cache" / "matplotlib"),
        "HF_HUB_OFFLINE": "1",
    }
    for key in ("NPROC_PER_NODE", "NNODES"):  # one process on one GPU: tokens/s per GPU
        env.pop(key, None)
    runner = Runner(work, env, time.monotonic() + args.budget_s)
    base = RECIPES["runbook_7b"]
    # On CPU: no bf16 and no flash-attn, hence no packing (swift refuses packing without flash-attn).
    overrides: dict[str, Any] = {} if gpu else {"torch_dtype": "float32", "packing": False, "attn_impl": "sdpa"}
    overrides |= {"logging_steps": 1}  # one logging.jsonl line per step: steady-state throughput
    result: dict[str, Any] = {
        "check": "bench/gpu_check.py",
        "mode": "gpu" if gpu else "smoke: CPU, tiny config (not a GPU figure)",
        "date": datetime.date.today().isoformat(),
        "ok": False,
        **versions(),
        "recipe": "runbook_7b",
        "steps_requested": args.steps,
        "model_config": QWEN25_7B if gpu else TINY,
        "mfu_formula": MFU_FORMULA,
    }
    try:
        runner.run("tokenizer", [sys.executable, "-m", "mh_assets.runners.build_tiny_model", str(work / "tiny")])
        sequences = args.steps * base.per_device_train_batch_size * base.gradient_accumulation_steps
        init = runner.child(
            "init",
            "init",
            {
                "gpu": gpu,
                "tokenizer": str(work / "tiny"),
                "model_dir": str(work / "base"),
                "dataset": str(work / "train.jsonl"),
                "config": result["model_config"],
                "dtype": overrides.get("torch_dtype", base.torch_dtype),
                "min_tokens": int(sequences * base.max_length * 1.15),  # full packs for every step, and spare
                "max_length": base.max_length,
            },
        )
        result |= init
        result["flash_attn"] = gpu and init["flash_attn_version"] is not None
        if gpu and not result["flash_attn"]:
            overrides |= {"packing": False, "attn_impl": "sdpa"}
        recipe = base.with_overrides(**overrides)
        result["attention"] = "flash_attn with packing" if recipe.packing else "sdpa without packing"
        result["tokens_counted"] = (
            "packed input tokens (padding-free)" if recipe.packing else "input tokens including padding (no packing)"
        )
        result["recipe_overrides"] = overrides
        run = SftRun(
            model=str(work / "base"),
            dataset=str(work / "train.jsonl"),
            output_dir=str(work / "sft"),
            recipe=recipe,
            # num_input_tokens_seen for tokens/s; swift's CLI takes only a boolean: padding, if any, is counted too
            extra={"max_steps": args.steps},
        )
        result["sft_command"] = run.to_cli(cuda_devices or None)
        sampler = MemorySampler(cuda_devices) if gpu and shutil.which("nvidia-smi") else None
        if sampler:
            sampler.start()
        try:
            runner.run("sft", [sys.executable, "-m", "swift.cli.main", "sft", *run.to_args()])
        finally:
            smi_gib = sampler.stop() if sampler else None
        result |= training_figures(work / "sft" / "logging.jsonl")
        result["sft_seconds"] = runner.seconds["sft"]
        result["peak_tflops"] = args.peak_tflops or peak_tflops_for(result["gpu"])
        result["mfu"] = mfu(result["params"], result["tokens_per_s_per_gpu"], result["peak_tflops"])
        result["peak_memory_gib_nvidia_smi"] = smi_gib
        if result["swift_memory_gib"] is not None:
            result["peak_memory_gib"] = result["swift_memory_gib"]
            result["peak_memory_source"] = "torch.cuda.max_memory_reserved, from swift logging.jsonl memory(GiB)"
        else:
            result["peak_memory_gib"] = smi_gib
            result["peak_memory_source"] = "nvidia-smi memory.used, sampled every 0.5 s" if smi_gib else "none (CPU)"
        checkpoint = parse_logging(work / "sft" / "logging.jsonl").result["last_model_checkpoint"]
        merge = MergeRun(adapters=checkpoint, output_dir=str(work / "merged"), device_map=None if gpu else "cpu")
        runner.run("merge", [sys.executable, "-m", "swift.cli.main", "export", *merge.to_args()])
        result["merge_seconds"] = runner.seconds["merge"]
        shards = sorted((work / "merged").glob("*.safetensors"))
        result["merged_safetensors"] = [p.name for p in shards]
        result["merged_bytes"] = sum(p.stat().st_size for p in shards)
        result |= runner.child(
            "generate",
            "generate",
            {"gpu": gpu, "model_dir": str(work / "merged"), "dtype": recipe.torch_dtype, "new_tokens": args.new_tokens},
        )
        result["ok"] = True
    except StepFailed as exc:
        result |= {"error": str(exc), "failed_step": exc.step, "log_tail": exc.log_tail}
    result["step_seconds"] = runner.seconds
    result["total_seconds"] = round(sum(runner.seconds.values()), 2)
    return result


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke: tiny config, same code path")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 8 on a GPU, 2 for the smoke)")
    parser.add_argument("--out", type=Path, help="result JSON (bench/results/gpu-<date>.json; smoke: a tmp dir)")
    parser.add_argument("--work-dir", type=Path, help="kept if given; default a temporary folder, removed at the end")
    parser.add_argument("--budget-s", type=float, default=570, help="time budget for all steps together")
    parser.add_argument("--cuda-device", default="0", help="the one GPU to use (CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated from the merged model")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of a GPU not in PEAK_BF16_TFLOPS")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.dry_run else 8)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is warm-up, not timed")
    if args.work_dir and args.work_dir.exists() and any(args.work_dir.iterdir()):
        parser.error(f"--work-dir {args.work_dir} is not empty (swift appends to its logs and skips existing exports)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CHILDREN:
        spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        result = CHILDREN[argv[0]](spec)
        Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run_check(args, work.resolve())
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    date = datetime.date.today().isoformat()
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu-smoke-")) / f"gpu-smoke-{date}.json" if args.dry_run else None)
    out = out or RESULTS / f"gpu-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    shown = {k: v for k, v in result.items() if k not in ("log_tail", "mfu_formula", "model_config", "sft_command")}
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    print(result.get("log_tail", ""), file=sys.stderr)
    print(f"[gpu_check] {'ok' if result['ok'] else 'FAILED'}: {out}", flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
