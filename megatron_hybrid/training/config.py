"""The training run's configuration: one typed dataclass, YAML presets and command-line overrides.

A run is described by ``launch/configs/<name>.yaml`` plus ``--key value`` overrides. Field names
follow Megatron-LM's flags where the two overlap (``--micro-batch-size``, ``--lr-warmup-iters``,
``--tensor-model-parallel-size``...), so people coming from Megatron feel at home; ``-`` and ``_``
are interchangeable on the command line. Unknown keys are errors (a typo must never silently fall
back to a default), and :meth:`TrainConfig.check` rejects inconsistent values before any process
group, model or data file is touched.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "launch" / "configs"


@dataclass
class TrainConfig:
    """Everything a pretraining run needs; defaults are Olmo's stage-1 recipe where one exists."""

    # --- model ---------------------------------------------------------------------------------
    model: str = field(default="tiny_hybrid", metadata={"help": "model preset name (megatron_hybrid.models.presets)"})
    model_overrides: dict = field(
        default_factory=dict, metadata={"help": "fields of the model config to replace, e.g. {n_layers: 4}"}
    )

    # --- parallel layout -----------------------------------------------------------------------
    tensor_model_parallel_size: int = field(default=1, metadata={"help": "tensor-parallel ranks (TP)"})
    pipeline_model_parallel_size: int = field(default=1, metadata={"help": "pipeline stages (PP)"})
    virtual_pipeline_model_parallel_size: int | None = field(
        default=None, metadata={"help": "model chunks per pipeline rank (interleaved 1F1B); null = off"}
    )
    sequence_parallel: bool = field(default=False, metadata={"help": "shard norms/dropout over TP along the sequence"})
    use_distributed_optimizer: bool = field(default=True, metadata={"help": "shard optimizer state over DP (ZeRO-1)"})
    overlap_grad_reduce: bool = field(default=False, metadata={"help": "overlap DP grad reduce-scatter with backward"})
    overlap_param_gather: bool = field(default=False, metadata={"help": "overlap DP param all-gather with forward"})

    # --- batch and length ----------------------------------------------------------------------
    seq_length: int = field(default=8192, metadata={"help": "tokens per training sequence"})
    micro_batch_size: int = field(default=1, metadata={"help": "sequences per micro-batch per DP rank"})
    global_batch_size: int = field(default=512, metadata={"help": "sequences per optimizer step (all DP ranks)"})
    train_iters: int | None = field(default=None, metadata={"help": "optimizer steps; or give train_tokens"})
    train_tokens: int | None = field(default=None, metadata={"help": "token budget; sets train_iters when given"})

    # --- optimizer and schedule ----------------------------------------------------------------
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    min_lr: float | None = field(default=None, metadata={"help": "LR floor; null = min_lr_ratio * lr"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "LR floor as a fraction of lr when min_lr is null"})
    lr_warmup_iters: int = field(default=2000, metadata={"help": "linear warmup steps from 0"})
    lr_decay_iters: int | None = field(
        default=None, metadata={"help": "steps of decay after which LR stays at the floor; null = train_iters"}
    )
    lr_decay_style: str = field(
        default="cosine", metadata={"help": "cosine | linear | constant | inverse-square-root | WSD"}
    )
    lr_wsd_decay_iters: int | None = field(
        default=None, metadata={"help": "WSD: steps of the final decay (Megatron's --lr-wsd-decay-iters)"}
    )
    lr_wsd_decay_style: str = field(
        default="linear", metadata={"help": "WSD final decay: linear | cosine | exponential | minus_sqrt"}
    )
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW decoupled weight decay"})
    no_weight_decay_params: list = field(
        default_factory=lambda: ["*word_embeddings.weight"],
        metadata={"help": "glob patterns of parameter names without weight decay (Olmo: the embedding only)"},
    )
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    adam_eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    clip_grad: float = field(default=1.0, metadata={"help": "global grad-norm clip; 0 = off"})
    z_loss_weight: float = field(default=1e-5, metadata={"help": "weight of the z-loss (logsumexp^2) term"})

    # --- stability ------------------------------------------------------------------------------
    skip_spike_sigma: float = field(
        default=6.0,
        metadata={"help": "skip a step whose loss or grad norm exceeds the rolling mean by this many std; 0 = off"},
    )
    skip_spike_window: int = field(default=128, metadata={"help": "steps of history for the spike test"})
    skip_spike_min_history: int = field(default=20, metadata={"help": "steps of history before the spike test starts"})
    max_nonfinite_steps: int = field(default=8, metadata={"help": "consecutive NaN/inf steps that stop the run"})

    # --- precision and memory ---------------------------------------------------------------------
    bf16: bool = field(default=True, metadata={"help": "bf16 params/compute (fp32 main params in the optimizer)"})
    grad_reduce_in_fp32: bool = field(default=True, metadata={"help": "accumulate and reduce grads in fp32"})
    recompute_granularity: str | None = field(default=None, metadata={"help": "null | selective | full"})
    recompute_method: str | None = field(default=None, metadata={"help": "uniform | block (with full)"})
    recompute_num_layers: int | None = field(default=None, metadata={"help": "layers per recompute unit (with full)"})

    # --- data -------------------------------------------------------------------------------------
    data_path: list = field(
        default_factory=list,
        metadata={
            "help": "Megatron-style blend: [prefix] or [w1, prefix1, w2, prefix2]; prefixes of .bin/.idx or .npy files"
        },
    )
    data_format: str = field(default="auto", metadata={"help": "auto | indexed (.bin/.idx) | npy (flat token memmaps)"})
    data_dtype: str | None = field(
        default=None, metadata={"help": "token dtype of npy files (uint16|uint32); checked against indexed files"}
    )
    split: str = field(default="99,1,0", metadata={"help": "train,valid,test split weights (Megatron syntax)"})
    data_cache_path: str | None = field(
        default=None, metadata={"help": "where Megatron dataset index caches go; null = next to the run"}
    )
    data_loader: str = field(default="default", metadata={"help": "default (torch DataLoader) | dali (NVIDIA DALI)"})
    num_workers: int = field(default=2, metadata={"help": "data-loader worker processes"})
    data_check_tokens: int = field(
        default=1 << 24, metadata={"help": "tokens sampled per file to check ids < vocab before training"}
    )
    eod_token_id: int | None = field(default=None, metadata={"help": "end-of-document id; null = the model's eos"})

    # --- run, checkpoints, logging ------------------------------------------------------------
    seed: int = field(default=1234, metadata={"help": "seed for init and data order"})
    save: str | None = field(default=None, metadata={"help": "checkpoint directory; null = no checkpoints"})
    load: str | None = field(default=None, metadata={"help": "checkpoint directory to resume from; null = save"})
    save_interval: int = field(default=1000, metadata={"help": "steps between checkpoints"})
    keep_last: int = field(default=3, metadata={"help": "checkpoints kept (older ones are deleted)"})
    ckpt_fully_reshardable: bool = field(
        default=False, metadata={"help": "save optimizer state so it can be loaded at another TP/PP (slower save)"}
    )
    pretrained_checkpoint: str | None = field(
        default=None,
        metadata={"help": "start a fresh run from these model weights (a checkpoint folder or its parent; any layout)"},
    )
    allow_reshard: bool = field(
        default=False, metadata={"help": "allow loading a checkpoint saved with another TP/PP/DP layout"}
    )
    exit_on_sigterm: bool = field(default=True, metadata={"help": "on SIGTERM, save a checkpoint and exit cleanly"})
    stop_file: str | None = field(
        default=None,
        metadata={"help": "if this file appears, save and exit cleanly at the next step (SLURM time-limit warning)"},
    )
    tensorboard_dir: str | None = field(default=None, metadata={"help": "TensorBoard event directory; null = none"})
    log_interval: int = field(default=10, metadata={"help": "steps between console lines / TB points"})
    eval_interval: int = field(default=1000, metadata={"help": "steps between validation runs; 0 = off"})
    eval_iters: int = field(default=10, metadata={"help": "validation batches per run"})
    peak_tflops: float = field(default=989.0, metadata={"help": "per-GPU dense bf16 peak used for MFU (H100 SXM: 989)"})
    exit_interval: int | None = field(
        default=None, metadata={"help": "stop (with a checkpoint) after this many steps in this process"}
    )
    async_tensor_parallel: bool = field(
        default=False,
        metadata={
            "help": "pipeline the sequence-parallel all-gathers / reduce-scatters with the linears' GEMMs "
            "(torch symmetric memory; CUDA, TP > 1 with sequence_parallel)"
        },
    )
    gradient_accumulation_fusion: bool | None = field(
        default=None,
        metadata={
            "help": "weight-gradient GEMMs accumulate into the fp32 main_grad (apex's extension, else torch's addmm "
            "with out_dtype; CUDA only); null = when available, true = required"
        },
    )
    fused_adam: bool | None = field(
        default=None,
        metadata={
            "help": "torch's fused AdamW kernel (one pass over parameters and moments per step) instead of its foreach "
            "implementation, where Megatron uses torch's AdamW (no apex/TE); null = on CUDA"
        },
    )
    fused_cross_entropy: bool | None = field(
        default=None,
        metadata={
            "help": "cross-entropy and z-loss in Triton kernels that read the logits once and write their gradient "
            "over them (torch ops otherwise: fp32 copies of the logits live until the backward); null = on CUDA"
        },
    )
    profile_step_start: int | None = field(
        default=None, metadata={"help": "profile from this step (1-based) with the PyTorch profiler; null = off"}
    )
    profile_steps: int = field(default=1, metadata={"help": "steps in the profiled window"})
    profile_ranks: list[int] = field(default_factory=lambda: [0], metadata={"help": "global ranks that profile"})
    profile_dir: str | None = field(
        default=None,
        metadata={"help": "trace and GPU-time tables go here; null = <tensorboard_dir>/profile, else ./profile"},
    )

    # ------------------------------------------------------------------------------------------
    def check(self, world_size: int | None = None) -> None:
        """Raise ValueError naming the field when values cannot work together."""
        tp, pp = self.tensor_model_parallel_size, self.pipeline_model_parallel_size
        for name in (
            "tensor_model_parallel_size",
            "pipeline_model_parallel_size",
            "micro_batch_size",
            "global_batch_size",
            "seq_length",
            "log_interval",
            "save_interval",
            "keep_last",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_iters is None and self.train_tokens is None:
            raise ValueError("set train_iters or train_tokens")
        if self.data_loader not in ("default", "dali"):
            raise ValueError(f"data_loader must be 'default' or 'dali', got {self.data_loader!r}")
        if self.data_format not in ("auto", "indexed", "npy"):
            raise ValueError(f"data_format must be auto|indexed|npy, got {self.data_format!r}")
        if self.data_dtype not in (None, "uint16", "uint32", "int32", "int64"):
            raise ValueError(f"data_dtype must be uint16|uint32|int32|int64, got {self.data_dtype!r}")
        if self.recompute_granularity not in (None, "selective", "full"):
            raise ValueError(f"recompute_granularity must be null|selective|full, got {self.recompute_granularity!r}")
        if self.lr_decay_style == "WSD" and self.lr_wsd_decay_iters is None:
            raise ValueError("lr_decay_style=WSD needs lr_wsd_decay_iters (steps of the final decay)")
        if self.lr_wsd_decay_style not in ("linear", "cosine", "exponential", "minus_sqrt"):
            raise ValueError(
                f"lr_wsd_decay_style must be linear|cosine|exponential|minus_sqrt, got {self.lr_wsd_decay_style!r}"
            )
        if self.profile_step_start is not None and (self.profile_step_start < 1 or self.profile_steps < 1):
            raise ValueError(
                f"profile_step_start and profile_steps must be >= 1, got {self.profile_step_start} and "
                f"{self.profile_steps} (profile_step_start: null turns profiling off)"
            )
        if self.async_tensor_parallel and (tp == 1 or not self.sequence_parallel):
            raise ValueError(
                "async_tensor_parallel overlaps the sequence-parallel collectives: it needs "
                f"tensor_model_parallel_size > 1 (got {tp}) and sequence_parallel: true (got {self.sequence_parallel})"
            )
        if self.sequence_parallel and tp == 1:
            raise ValueError("sequence_parallel needs tensor_model_parallel_size > 1")
        if self.virtual_pipeline_model_parallel_size is not None and pp < 2:
            raise ValueError("virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size >= 2")
        if world_size is not None:
            if world_size % (tp * pp):
                raise ValueError(
                    f"world size {world_size} is not divisible by tensor_model_parallel_size x "
                    f"pipeline_model_parallel_size = {tp * pp}"
                )
            dp = world_size // (tp * pp)
            if self.global_batch_size % (self.micro_batch_size * dp):
                raise ValueError(
                    f"global_batch_size {self.global_batch_size} is not divisible by micro_batch_size "
                    f"{self.micro_batch_size} x data-parallel size {dp}"
                )
            micro = self.global_batch_size // (self.micro_batch_size * dp)
            if self.virtual_pipeline_model_parallel_size is not None and micro % pp:
                raise ValueError(
                    f"interleaved pipelining needs the number of micro-batches ({micro}) to be a multiple "
                    f"of pipeline_model_parallel_size ({pp})"
                )

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_length

    def resolved_train_iters(self) -> int:
        if self.train_iters is not None:
            return self.train_iters
        return -(-self.train_tokens // self.tokens_per_step)

    def resolved_min_lr(self) -> float:
        return self.min_lr if self.min_lr is not None else self.lr * self.min_lr_ratio

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Loading: YAML file(s) + overrides


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def _coerce(name: str, value, annotation):
    """Turn a CLI string (or YAML scalar) into the field's type; errors name the field."""
    if not isinstance(value, str):
        return value
    args = typing.get_args(annotation)
    allows_none = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    if allows_none and value.lower() in ("null", "none", "~"):
        return None
    try:
        if base is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            return int(float(value)) if "e" in value.lower() else int(value)
        if base is float:
            return float(value)
        if base is list or typing.get_origin(base) is list:
            parsed = yaml.safe_load(value)
            return parsed if isinstance(parsed, list) else [value]  # "--data-path '0.5 a 0.5 b'"
        if base is dict or typing.get_origin(base) is dict:
            return yaml.safe_load(value)
    except ValueError:
        raise ValueError(f"{name}: cannot read {value!r} as {getattr(base, '__name__', base)}") from None
    return value


def _apply(values: dict, overrides: dict, source: str) -> None:
    types = _field_types()
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key.startswith("model_overrides."):
            values.setdefault("model_overrides", {})[key.split(".", 1)[1]] = (
                yaml.safe_load(value) if isinstance(value, str) else value
            )
            continue
        if key not in types:
            raise ValueError(f"unknown config key {key!r} in {source}; see `python -m megatron_hybrid.train --help`")
        if key == "model_overrides":
            value = yaml.safe_load(value) if isinstance(value, str) else value
            values.setdefault("model_overrides", {}).update(value or {})
            continue
        values[key] = _coerce(key, value, types[key])


def resolve_config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"config {name_or_path!r} not found (looked at {path})")
    return path


def load_config(config: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML preset (``include:`` chains allowed), apply overrides, return a TrainConfig."""
    values: dict = {}
    if config is not None:
        _apply_yaml(values, resolve_config_path(config), seen=set())
    _apply(values, overrides or {}, "overrides")
    return TrainConfig(**values)


def _apply_yaml(values: dict, path: Path, seen: set) -> None:
    if path in seen:
        raise ValueError(f"config include cycle at {path}")
    seen.add(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    include = data.pop("include", None)
    if include:
        _apply_yaml(
            values, resolve_config_path(str(path.parent / include) if include.endswith(".yaml") else include), seen
        )
    _apply(values, data, str(path))


def parse_overrides(argv: list[str]) -> dict:
    """``--key value`` / ``--key=value`` pairs to a dict (values stay strings for typed coercion)."""
    out: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ValueError(f"expected --key value, got {arg!r}")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                value = "true"  # a bare flag means a boolean switched on
                i += 1
            else:
                value = argv[i + 1]
                i += 2
        out[key] = value
    return out


def help_text() -> str:
    lines = []
    types = _field_types()
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        kind = getattr(types[f.name], "__name__", None) or str(types[f.name]).replace("typing.", "")
        lines.append(f"  {flag:<42} {f.metadata.get('help', '')} [{default!r}; {kind}]")
    return "\n".join(lines)
