"""MEGATRON_HYBRID_GDN_STATE_DOTS: how the sequential state kernels multiply with their fp32 state."""

from __future__ import annotations

import pytest

from megatron_hybrid.ops.gated_delta_rule.utils import STATE_DOT_MODES, STATE_DOTS_DEFAULT, state_dot_flags


def test_default_rounds_the_read_and_keeps_the_update_in_fp32(monkeypatch):
    monkeypatch.delenv("MEGATRON_HYBRID_GDN_STATE_DOTS", raising=False)
    assert STATE_DOTS_DEFAULT == "update"
    # the products that read the state (w h, (k exp) dh) rounded to bf16; the updates (k^T v_new, w^T dv2) in fp32
    assert state_dot_flags("fwd") == (False, True)
    assert state_dot_flags("bwd") == (False, True)


@pytest.mark.parametrize("mode", sorted(STATE_DOT_MODES))
def test_one_mode_sets_both_passes(monkeypatch, mode):
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_STATE_DOTS", mode)
    assert state_dot_flags("fwd") == state_dot_flags("bwd") == STATE_DOT_MODES[mode]


def test_forward_and_backward_modes(monkeypatch):
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_STATE_DOTS", "bf16,tf32")
    assert state_dot_flags("fwd") == (False, False)
    assert state_dot_flags("bwd") == (True, True)


@pytest.mark.parametrize("bad", ["fp8", "tf32,bf16,read", "", "update,"])
def test_bad_value_names_the_variable_and_the_modes(monkeypatch, bad):
    monkeypatch.setenv("MEGATRON_HYBRID_GDN_STATE_DOTS", bad)
    with pytest.raises(ValueError, match="MEGATRON_HYBRID_GDN_STATE_DOTS must be .*'bf16', 'read', 'tf32', 'update'"):
        state_dot_flags("fwd")
