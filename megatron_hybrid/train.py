"""Pretraining entry point: ``python -m megatron_hybrid.train --config launch/configs/X.yaml [--key value ...]``.

Run it under ``torchrun`` (``launch/torchrun.sh``), SLURM (``launch/slurm/pretrain.sbatch``) or
plainly as one process. Any field of :class:`megatron_hybrid.training.config.TrainConfig` can be
overridden (``--lr 1e-3``, ``--model-overrides.n_layers 4``); unknown keys are errors.
``--dry-run`` prints the resolved config, the parallel layout, parameter count, FLOPs per token
and a per-GPU memory estimate, and exits without touching data or GPUs.
"""

from __future__ import annotations

import json
import os
import sys

USAGE = """usage: python -m megatron_hybrid.train --config NAME_OR_YAML [--key value ...] [--dry-run [--world-size N]]

  --config NAME_OR_YAML                      launch/configs/ preset (smoke, olmo_hybrid_7b, ...) or a YAML path [smoke]
  --dry-run                                  print the resolved config, layout, params, FLOPs, memory; exit [off]
  --world-size N                             ranks assumed by --dry-run [$WORLD_SIZE, else TP x PP]

config keys (YAML or --key value; '-' and '_' are the same):
"""


def _pop_flag(argv: list[str], name: str, takes_value: bool):
    if name not in argv:
        return None
    i = argv.index(name)
    if takes_value:
        value = argv[i + 1]
        del argv[i : i + 2]
        return value
    del argv[i]
    return True


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    from megatron_hybrid.training.config import help_text, load_config, parse_overrides

    if "-h" in argv or "--help" in argv:
        print(USAGE + help_text())
        return None
    config = _pop_flag(argv, "--config", True) or "smoke"
    dry_run = bool(_pop_flag(argv, "--dry-run", False))
    world = _pop_flag(argv, "--world-size", True)
    cfg = load_config(config, parse_overrides(argv))
    if dry_run:
        from megatron_hybrid.training import model as model_api
        from megatron_hybrid.training.estimate import summary

        world_size = int(
            world or os.environ.get("WORLD_SIZE") or cfg.tensor_model_parallel_size * cfg.pipeline_model_parallel_size
        )
        cfg.check(world_size)
        model_cfg = model_api.model_config(cfg.model, cfg.model_overrides)
        model_cfg.validate(
            cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.virtual_pipeline_model_parallel_size
        )
        print("resolved config:")
        print(json.dumps(cfg.to_dict(), indent=2, default=str))
        print(summary(cfg, model_cfg, world_size))
        return None
    from megatron_hybrid.compat.distributed import destroy_distributed
    from megatron_hybrid.training.trainer import train

    try:
        return train(cfg)
    finally:
        destroy_distributed()


if __name__ == "__main__":  # dist_checkpointing.save spawns processes: keep the entry point guarded
    main()
