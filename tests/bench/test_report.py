"""The benchmarks' environment record on a machine without a GPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU behaviour")
def test_gpu_state_and_warm_up_are_no_ops_without_a_gpu():
    assert report.gpu_state() == ""
    assert report.warm_up_gpu(5.0) == 0.0  # returns at once: nothing to warm
    env = report.environment()
    assert "gpu_state" not in env and env["card"] == "cpu"


# `nvidia-smi topo -m` as printed (tab-separated, the header underlined with ANSI codes), on an NVLink host and on a
# PCIe host whose GPU pairs differ
NVLINK_TOPO = (
    "\t\x1b[4mGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
    "GPU0\t X \tNV18\tNV18\tNV18\tPXB\t0-63\t0\t\tN/A\n"
    "GPU1\tNV18\t X \tNV18\tNV18\tPXB\t0-63\t0\t\tN/A\n"
    "GPU2\tNV18\tNV18\t X \tNV18\tSYS\t64-127\t1\t\tN/A\n"
    "GPU3\tNV18\tNV18\tNV18\t X \tSYS\t64-127\t1\t\tN/A\n"
    "\nLegend:\n\n  X    = Self\n  NV#  = Connection traversing a bonded set of # NVLinks\n"
)
PCIE_TOPO = (
    "\tGPU0\tGPU1\tGPU2\tCPU Affinity\n"
    "GPU0\t X \tPIX\tSYS\t0-31\n"
    "GPU1\tPIX\t X \tSYS\t0-31\n"
    "GPU2\tSYS\tSYS\t X \t32-63\n"
)


def test_gpu_links_reads_the_topology_matrix():
    assert report.gpu_links(NVLINK_TOPO) == "all 6 GPU pairs: NV18"  # the NIC column is not a GPU pair
    assert report.gpu_links(PCIE_TOPO) == "GPU0-GPU1 PIX, GPU0-GPU2 SYS, GPU1-GPU2 SYS"
    assert report.gpu_links("\tGPU0\tCPU Affinity\nGPU0\t X \t0-15\n") == ""  # one GPU: no pair
    assert report.gpu_links("") == "" and report.gpu_links("No devices were found") == ""


def test_environment_names_the_host_cpu():
    cpu = report.environment()["host_cpu"]
    assert cpu.endswith(f"({os.cpu_count()} logical CPUs)") and len(cpu) > len(" (1 logical CPUs)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU behaviour")
def test_gpu_host_is_empty_without_a_gpu():
    assert report.gpu_host() == "" and "gpu_host" not in report.environment()
