"""Where computing happens: the device a run asks for, its name in a record,
its free and peak memory, and whether bf16 autocast pays off on it."""

from __future__ import annotations

import os
import platform

import torch

from layerscope.engine.errors import UserError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; a named device must exist."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available to this PyTorch "
                            f"({torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: layerscope runs on cpu or cuda")
    return device


def device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H200)`` or ``cpu (x86_64, 2 threads)``, as run records say it."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


FALLBACK_FREE = 8 << 30      # assumed free memory where the system does not say (macOS, Windows)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now: CUDA's count, or the RAM this process can
    still take: the kernel's ``MemAvailable`` (free pages plus the page cache it
    can drop), capped by the container's cgroup limit where one is set."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    # Not os.sysconf("SC_AVPHYS_PAGES"): that counts only free pages, so after a
    # few GB of data files were read it reported too little and the engine chose
    # blocks where the whole graph fits. Not psutil: it is not a dependency.
    available = _meminfo_available()
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            available = FALLBACK_FREE
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup v2 memory limit, None without one."""
    try:
        with open("/proc/self/cgroup") as lines:
            group = next((line.rstrip("\n").split("::", 1)[1] for line in lines if line.startswith("0::")), None)
        if group is None:
            return None
        folder = os.path.join("/sys/fs/cgroup", group.lstrip("/"))
        with open(os.path.join(folder, "memory.max")) as limit:
            text = limit.read().strip()
        if text == "max":
            return None
        with open(os.path.join(folder, "memory.current")) as current:
            return max(0, int(text) - int(current.read().strip()))
    except (OSError, ValueError):
        return None


def gpu_peak_bytes(device: torch.device) -> int | None:
    """The most GPU memory PyTorch held on ``device`` since its last reset (None on CPU)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: CUDA, or a CPU with
    AVX512-BF16 or AMX (elsewhere oneDNN emulates bf16, slower than float32)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and any(getattr(torch.cpu, check, lambda: False)()
                                        for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def bf16_autocast(device: torch.device, enabled: bool):
    # bf16 autocast for sampled batches where the hardware has it: bench/scale.py's
    # ogbn-products-size epoch on 2 EPYC cores (AVX512-BF16) takes 127 s instead of 197 s.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and native_bf16(device))
