"""The card's peak: dense bf16 TFLOP/s and memory GB/s from vendor datasheets, or from the command line."""

from __future__ import annotations

import platform
import re

# (pattern on torch.cuda.get_device_name, dense bf16 TFLOP/s without sparsity, memory GB/s): vendor datasheets.
# First match wins, so a variant's row comes before its family's. Unknown cards get no fraction of peak unless
# --peak-tflops / --peak-gbps say.
PEAKS = [
    (r"GH200", 989.0, None),  # HBM3 4.0 or HBM3e 4.9 TB/s depending on the model
    (r"H200 NVL", 835.0, 4800.0),
    (r"H200", 989.0, 4800.0),
    (r"H100 NVL", 835.0, 3900.0),
    (r"H100 PCIe", 756.0, 2000.0),
    (r"H100", 989.0, 3350.0),  # SXM5, "NVIDIA H100 80GB HBM3"
    (r"B200", 2250.0, 8000.0),
    (r"A100-SXM4-80GB", 312.0, 2039.0),
    (r"A100 80GB PCIe", 312.0, 1935.0),
    (r"A100", 312.0, 1555.0),  # 40 GB models
    (r"L40S", 362.0, 864.0),
    (r"\bL4\b", 121.0, 300.0),
    (r"\bA10\b", 125.0, 600.0),
    (r"RTX 4090", 165.0, 1008.0),
]
FLAGS = {"tflops": "--peak-tflops", "gbps": "--peak-gbps"}


def lookup_peak(device_name: str) -> tuple[str, float, float | None] | None:
    """The first PEAKS row whose pattern matches the name torch.cuda.get_device_name gives, or None."""
    return next((row for row in PEAKS if re.search(row[0], device_name)), None)


def peak_for(device_name: str, cuda: bool, tflops: float | None = None, gbps: float | None = None) -> dict:
    """The peak of the card named `device_name`: the overrides first, then the table (CUDA devices only), else None
    with the reason and the flag that gives it."""
    hit = lookup_peak(device_name) if cuda else None
    out = {"device_name": device_name, "tflops": tflops, "gbps": gbps, "tflops_source": None, "gbps_source": None}
    for key, index in (("tflops", 1), ("gbps", 2)):
        flag = FLAGS[key]
        if out[key] is not None:
            out[f"{key}_source"] = flag
        elif hit is not None and hit[index] is not None:
            out[key], out[f"{key}_source"] = hit[index], f"table ({hit[0]})"
        else:
            why = "not a CUDA device" if not cuda else f"{device_name!r} not in the peak table"
            out[f"{key}_source"] = f"unknown: {why}; pass {flag}"
    return out


def peaks(device, tflops: float | None, gbps: float | None) -> dict:
    """`peak_for` the torch device: its CUDA name, or the CPU's (which has no table entry)."""
    if device.type != "cuda":
        return peak_for(platform.processor() or "cpu", False, tflops, gbps)
    import torch

    return peak_for(torch.cuda.get_device_name(device), True, tflops, gbps)
