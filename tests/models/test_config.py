"""Presets, exact parameter counts, FLOPs, per-stage layer specs and config validation."""

from __future__ import annotations

import pytest
import torch

from layer_specs import hybrid_layer_specs, olmo3_layer_specs, olmo_hybrid_layer_specs
from megatron_hybrid.compat.distributed import init_distributed
from megatron_hybrid.layers.attention import OlmoSelfAttention
from megatron_hybrid.layers.gated_delta_net import GatedDeltaNet
from megatron_hybrid.models import build_model, presets


@pytest.fixture(scope="module", autouse=True)
def one_process_group():
    init_distributed()


def _meta_param_count(cfg) -> int:
    with torch.device("meta"):
        model = build_model(cfg, cfg.transformer_config(use_cpu_initialization=False, perform_initialization=False))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", [("olmo3_7b", 7_298_617_344), ("olmo_hybrid_7b", 7_430_870_688)])
def test_7b_presets_have_the_published_parameter_counts(name, expected):
    cfg = presets.get(name)
    assert cfg.num_params() == expected
    assert _meta_param_count(cfg) == expected


def test_gdn_mixer_of_olmo_hybrid_7b():
    cfg = presets.get("olmo_hybrid_7b")
    assert (cfg.gdn_key_heads, cfg.gdn_k_dim, cfg.gdn_v_dim) == (30, 96, 192)
    assert cfg.gdn_mixer_params() == 88_750_332
    assert cfg.layer_types() == "GGGA" * 8


@pytest.mark.parametrize("name", sorted(n for n in presets.PRESETS if n.startswith("ladder_1") or n.startswith("tiny")))
def test_analytic_count_matches_the_module(name):
    cfg = presets.get(name)
    assert cfg.num_params() == _meta_param_count(cfg)


def test_flops_per_token_match_the_papers_figures():
    """~46.6 GFLOP/token for Olmo 3 7B and ~44.1 for the hybrid at 8K context."""
    assert presets.get("olmo3_7b").flops_per_token(8192) / 1e9 == pytest.approx(46.6, rel=0.01)
    assert presets.get("olmo_hybrid_7b").flops_per_token(8192) / 1e9 == pytest.approx(44.1, rel=0.01)


def test_layer_kinds_follow_the_pattern():
    cfg = presets.tiny("GSAG")
    model = build_model(cfg, cfg.transformer_config(use_cpu_initialization=True))
    mixers = [layer.self_attention for layer in model.decoder.layers]
    assert [type(m) for m in mixers] == [GatedDeltaNet, OlmoSelfAttention, OlmoSelfAttention, GatedDeltaNet]
    assert [getattr(m, "sliding_window", None) for m in mixers] == [None, 7, None, None]


@pytest.mark.parametrize("pp_rank,expected", [(0, "GGG"), (1, "AGG"), (2, "GAG"), (3, "GGA")])
def test_specs_per_pipeline_stage_follow_the_global_pattern(pp_rank, expected):
    """12 layers of GGGA over 4 stages: the pattern straddles stage boundaries."""
    cfg = presets.tiny("GGGA", n_layers=12)
    tcfg = cfg.transformer_config(pipeline_model_parallel_size=4, pipeline_dtype=torch.float32)
    specs = hybrid_layer_specs(tcfg, pp_rank=pp_rank).layer_specs
    kinds = "".join("G" if s.submodules.self_attention.module is GatedDeltaNet else "A" for s in specs)
    assert kinds == expected


def test_named_spec_builders():
    cfg = presets.tiny("GGGA", n_layers=8)
    tcfg = cfg.transformer_config()
    hybrid = [s.submodules.self_attention.module for s in olmo_hybrid_layer_specs(tcfg).layer_specs]
    assert hybrid == [GatedDeltaNet] * 3 + [OlmoSelfAttention] + [GatedDeltaNet] * 3 + [OlmoSelfAttention]
    olmo3 = [s.submodules.self_attention.params["sliding_window"] for s in olmo3_layer_specs(tcfg).layer_specs]
    assert olmo3 == [4096, 4096, 4096, None] * 2


@pytest.mark.parametrize(
    "changes,layout,field",
    [
        (dict(), dict(tensor_model_parallel_size=4), "n_heads=30 .* tensor_model_parallel_size=4"),
        (dict(n_heads=32, gdn_num_key_heads=30), dict(tensor_model_parallel_size=4), "gdn_num_key_heads=30"),
        (dict(layer_pattern="GGGA", n_layers=30), dict(), "n_layers=30"),
        (dict(layer_pattern="GGXA"), dict(), "layer_pattern='GGXA'"),
        (dict(gdn_value_head_dim=384), dict(), "gdn_value_head_dim=384"),
        (dict(), dict(pipeline_model_parallel_size=5), "pipeline_model_parallel_size=5"),
        (dict(n_heads=7, layer_pattern="A"), dict(), "n_heads=7"),
    ],
)
def test_impossible_configs_name_the_field(changes, layout, field):
    cfg = presets.get("olmo_hybrid_7b").replace(**changes)
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        cfg.validate(**layout)


def test_every_divisor_of_thirty_heads_is_a_valid_tp():
    cfg = presets.get("olmo_hybrid_7b")
    for tp in (1, 2, 3, 5, 6, 10, 15, 30):
        cfg.replace(ffn_hidden=11010 if tp in (3, 5, 6, 10, 15, 30) else 11008, vocab_size=100_350).validate(tp)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="olmo_hybrid_7b"):
        presets.get("olmo_hybird_7b")


def test_transformer_engine_backend_is_refused_clearly_without_te():
    pytest.importorskip("megatron.core")
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="backend='transformer_engine' needs Transformer Engine"):
            olmo_hybrid_layer_specs(presets.tiny().transformer_config(), backend="transformer_engine")
    else:
        pytest.skip("Transformer Engine is installed here")
