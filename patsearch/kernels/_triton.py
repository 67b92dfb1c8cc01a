"""Triton kernels behind :mod:`patsearch.kernels.ops`, and the host functions that launch them.

Addressing: a (B, C, H, W) tensor is read through three strides (sample, channel, pixel), H and W merged into one
pixel axis of length HW. That covers contiguous NCHW, channels-last, and a channel slice of either (the untouched
part ``x[:, c0:]`` of a partial mixer is read in place, without the copy that ``split`` + a contiguous kernel
would need). :func:`flat_strides` says when a tensor qualifies; the ops copy anything else first.

Layout of the work: statistics and per-channel reductions run on a (B, channel blocks, pixel splits) grid; each
program walks its pixel range in tiles of (BLOCK_HW, BLOCK_C), accumulating each element of the tile in float32
and reducing across threads once at the end, and writes per-split partials that a second small step combines
(one pass over the large tensor either way). Elementwise kernels take one tile per program. The spatial gate needs
all channels of a pixel at once (the gate is a dot product over channels), so its tiles span every channel.

Sizes and sample strides are not specialised (``do_not_specialize``): one compiled variant serves every stage
and batch size; channel and pixel strides are, so the contiguous axis is known to be contiguous at compile time.

Importing this module imports triton; the ops import it only when a kernel is about to run.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

# Tile budget (elements of one (BLOCK_HW, BLOCK_C) tile), how many programs a reduction grid aims for (a fixed
# number, or None: ``programs_per_sm`` times the device's SMs) and the warps per program (None: 8 for tiles of 4096
# elements or more, else 4). Tests shrink the first two so that small tensors still take the multi-tile,
# multi-split and ragged-block paths. The defaults are the best of benchmarks/kernels_tune.py's sweep on an H200
# (its figures: docs/BENCHMARKS.md).
TUNING = {"max_tile": 1024, "target_programs": None, "programs_per_sm": 16, "num_warps": None}


@contextlib.contextmanager
def tuned(**settings: int | None) -> Iterator[None]:
    """Run with some :data:`TUNING` entries replaced (benchmarks/kernels_tune.py), restoring them afterwards."""
    unknown = sorted(set(settings) - set(TUNING))
    if unknown:
        raise KeyError(f"unknown tuning keys {unknown}; known: {sorted(TUNING)}")
    saved = dict(TUNING)
    TUNING.update(settings)
    try:
        yield
    finally:
        TUNING.clear()
        TUNING.update(saved)


def flat_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(sample, channel, pixel) strides of a 4-D tensor whose H and W merge into one pixel axis, else None."""
    _, _, h, w = t.shape
    sb, sc, sh, sw = t.stride()
    if w == 1:
        return sb, sc, sh
    if h == 1 or sh == w * sw:
        return sb, sc, sw
    return None


def _channels_inner(t: torch.Tensor) -> bool:
    return t.stride(1) == 1 and t.shape[1] > 1


@functools.lru_cache(maxsize=8)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _target_programs(device: torch.device) -> int:
    if TUNING["target_programs"] is not None:
        return int(TUNING["target_programs"])
    per_sm = int(TUNING["programs_per_sm"])
    if device.type == "cuda":  # several resident programs per SM keep enough loads in flight to saturate HBM
        return per_sm * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return per_sm


def _warps(block_c: int, block_hw: int) -> int:
    if TUNING["num_warps"] is not None:
        return int(TUNING["num_warps"])
    return 8 if block_c * block_hw >= 4096 else 4


def _tile(c: int, hw: int, channels_inner: bool) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_HW): wide along whichever axis is contiguous in memory, so loads coalesce."""
    max_tile = TUNING["max_tile"]
    if channels_inner:
        bc = min(triton.next_power_of_2(c), 128, max_tile)
        return bc, max(1, min(triton.next_power_of_2(hw), max_tile // bc))
    bhw = min(triton.next_power_of_2(hw), 512, max_tile)
    return max(1, min(triton.next_power_of_2(c), max_tile // bhw)), bhw


def _splits(b: int, other_programs: int, hw: int, block_hw: int, device: torch.device) -> tuple[int, int]:
    """(pixels per split, number of splits): enough programs to fill the device, each split whole tiles."""
    tiles = triton.cdiv(hw, block_hw)
    want = max(1, min(tiles, triton.cdiv(_target_programs(device), b * other_programs)))
    per_split = triton.cdiv(tiles, want) * block_hw
    return per_split, triton.cdiv(hw, per_split)


def _tile_splits(hw: int, block_hw: int) -> tuple[int, int]:
    """(pixels per split, number of splits) with one tile per program: for the elementwise kernels, which have
    nothing to accumulate, as many independent programs as tiles keep the most loads in flight."""
    return block_hw, triton.cdiv(hw, block_hw)


def empty_dense_like(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor shaped like ``t``: channels-last where ``t``'s channels are innermost, else contiguous."""
    fmt = torch.channels_last if _channels_inner(t) else torch.contiguous_format
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).contiguous(memory_format=fmt)


def _inv(n: int) -> float:
    return 1.0 / n if n > 0 else 0.0


# --- channel statistics -------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["C", "HW", "sxb", "hw_per_split", "n_split"])
def _stats_fwd_kernel(x_ptr, pmean_ptr, pm2_ptr, mean_ptr, std_ptr, C, HW, sxb, sxc, sxhw, hw_per_split, n_split,
                      inv_nm1, FINAL: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    mask_c = offs_c < C
    hw_lo = split * hw_per_split
    hw_hi = tl.minimum(hw_lo + hw_per_split, HW)
    base = x_ptr + b * sxb + offs_c[None, :].to(tl.int64) * sxc
    # Sums of x - k per element of the tile, reduced across threads once at the end: a reduction per tile costs a
    # shared-memory round trip and barriers every iteration (the first version's 3-15% of copy bandwidth). The
    # shift k, the split's first pixel, keeps the sum of squares free of cancellation unless |mean - k| >> std.
    k = tl.load(base + hw_lo.to(tl.int64) * sxhw, mask=mask_c[None, :] & (hw_lo < hw_hi), other=0.0).to(tl.float32)
    s1 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    for start in range(hw_lo, hw_hi, BLOCK_HW):
        offs = start + tl.arange(0, BLOCK_HW)
        mask = (offs < hw_hi)[:, None] & mask_c[None, :]
        v = tl.load(base + offs[:, None].to(tl.int64) * sxhw, mask=mask, other=0.0).to(tl.float32)
        d = tl.where(mask, v - k, 0.0)
        s1 += d
        s2 += d * d
    n = tl.maximum(hw_hi - hw_lo, 1).to(tl.float32)
    sum1 = tl.sum(s1, axis=0)
    mean = tl.sum(k, axis=0) + sum1 / n
    m2 = tl.maximum(tl.sum(s2, axis=0) - sum1 * sum1 / n, 0.0)
    if FINAL:
        out = b * C + offs_c
        tl.store(mean_ptr + out, mean.to(mean_ptr.dtype.element_ty), mask=mask_c)
        tl.store(std_ptr + out, tl.sqrt(m2 * inv_nm1).to(std_ptr.dtype.element_ty), mask=mask_c)
    else:
        out = (b * n_split + split) * C + offs_c
        tl.store(pmean_ptr + out, mean, mask=mask_c)
        tl.store(pm2_ptr + out, m2, mask=mask_c)


@triton.jit(do_not_specialize=["C", "HW", "hw_per_split", "n_split"])
def _stats_combine_kernel(pmean_ptr, pm2_ptr, mean_ptr, std_ptr, C, HW, hw_per_split, n_split, inv_nm1,
                          BLOCK_C: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for split in range(n_split):
        n_seen = (split * hw_per_split).to(tl.float32)
        n_part = tl.minimum(HW - split * hw_per_split, hw_per_split).to(tl.float32)
        src = (b * n_split + split) * C + offs_c
        part_mean = tl.load(pmean_ptr + src, mask=mask_c, other=0.0)
        delta = part_mean - mean
        n_total = n_seen + n_part
        mean += delta * (n_part / n_total)
        m2 += tl.load(pm2_ptr + src, mask=mask_c, other=0.0) + delta * delta * (n_seen * n_part / n_total)
    out = b * C + offs_c
    tl.store(mean_ptr + out, mean.to(mean_ptr.dtype.element_ty), mask=mask_c)
    tl.store(std_ptr + out, tl.sqrt(m2 * inv_nm1).to(std_ptr.dtype.element_ty), mask=mask_c)


def channel_stats(x: torch.Tensor, float32: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    hw = h * w
    sxb, sxc, sxhw = flat_strides(x)
    mean = torch.empty((b, c), dtype=torch.float32 if float32 else x.dtype, device=x.device)
    std = torch.empty_like(mean)
    block_c, block_hw = _tile(c, hw, _channels_inner(x))
    c_blocks = triton.cdiv(c, block_c)
    per_split, n_split = _splits(b, c_blocks, hw, block_hw, x.device)
    inv_nm1 = _inv(hw - 1)  # a 1x1 map: m2 is 0 and so is the std
    final = n_split == 1
    pmean = mean if final else torch.empty((b, n_split, c), dtype=torch.float32, device=x.device)
    pm2 = std if final else torch.empty_like(pmean)
    _stats_fwd_kernel[(b, c_blocks, n_split)](x, pmean, pm2, mean, std, c, hw, sxb, sxc, sxhw, per_split, n_split,
                                              inv_nm1, FINAL=final, BLOCK_C=block_c, BLOCK_HW=block_hw,
                                              num_warps=_warps(block_c, block_hw))
    if not final:
        block = min(triton.next_power_of_2(c), 256)
        _stats_combine_kernel[(b, triton.cdiv(c, block))](pmean, pm2, mean, std, c, hw, per_split, n_split,
                                                          inv_nm1, BLOCK_C=block)
    return mean, std


@triton.jit(do_not_specialize=["C", "HW", "sxb", "sdb", "hw_per_split"])
def _stats_bwd_kernel(x_ptr, dx_ptr, gmean_ptr, gstd_ptr, mean_ptr, std_ptr, C, HW, sxb, sxc, sxhw, sdb, sdc, sdhw,
                      hw_per_split, inv_n, inv_nm1, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    mask_c = offs_c < C
    stat = b * C + offs_c
    mean = tl.load(mean_ptr + stat, mask=mask_c, other=0.0).to(tl.float32)
    std = tl.load(std_ptr + stat, mask=mask_c, other=0.0).to(tl.float32)
    a = tl.load(gmean_ptr + stat, mask=mask_c, other=0.0).to(tl.float32) * inv_n
    gs = tl.load(gstd_ptr + stat, mask=mask_c, other=0.0).to(tl.float32)
    # Zero spread (1x1 map, constant channel): the std term is 0, not 0/0.
    k = tl.where(std > 0, gs / tl.where(std > 0, std, 1.0) * inv_nm1, 0.0)
    hw_lo = split * hw_per_split
    hw_hi = tl.minimum(hw_lo + hw_per_split, HW)
    x_base = x_ptr + b * sxb + offs_c[None, :].to(tl.int64) * sxc
    d_base = dx_ptr + b * sdb + offs_c[None, :].to(tl.int64) * sdc
    for start in range(hw_lo, hw_hi, BLOCK_HW):
        offs = (start + tl.arange(0, BLOCK_HW))[:, None]
        mask = (offs < hw_hi) & mask_c[None, :]
        v = tl.load(x_base + offs.to(tl.int64) * sxhw, mask=mask, other=0.0).to(tl.float32)
        dx = a[None, :] + k[None, :] * (v - mean[None, :])
        tl.store(d_base + offs.to(tl.int64) * sdhw, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def channel_stats_backward(grad_mean: torch.Tensor, grad_std: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                           std: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    hw = h * w
    dx = empty_dense_like(x)
    block_c, block_hw = _tile(c, hw, _channels_inner(x))
    c_blocks = triton.cdiv(c, block_c)
    per_split, n_split = _tile_splits(hw, block_hw)
    _stats_bwd_kernel[(b, c_blocks, n_split)](
        x, dx, grad_mean.contiguous(), grad_std.contiguous(), mean.contiguous(), std.contiguous(), c, hw,
        *flat_strides(x), *flat_strides(dx), per_split, _inv(hw), _inv(hw - 1), BLOCK_C=block_c, BLOCK_HW=block_hw,
        num_warps=_warps(block_c, block_hw))
    return dx


# --- per-(sample, channel) scale with an optional per-channel affine ----------------------------------------


@triton.jit(do_not_specialize=["C", "HW", "sxb", "syb", "hw_per_split"])
def _scale_fwd_kernel(x_ptr, y_ptr, gate_ptr, scale_ptr, shift_ptr, C, HW, sxb, sxc, sxhw, syb, syc, syhw,
                      hw_per_split, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, BLOCK_C: tl.constexpr,
                      BLOCK_HW: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    mask_c = offs_c < C
    g = tl.load(gate_ptr + b * C + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    if HAS_SCALE:
        g = g * tl.load(scale_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    t = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_SHIFT:
        t = tl.load(shift_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    hw_lo = split * hw_per_split
    hw_hi = tl.minimum(hw_lo + hw_per_split, HW)
    x_base = x_ptr + b * sxb + offs_c[None, :].to(tl.int64) * sxc
    y_base = y_ptr + b * syb + offs_c[None, :].to(tl.int64) * syc
    for start in range(hw_lo, hw_hi, BLOCK_HW):
        offs = (start + tl.arange(0, BLOCK_HW))[:, None]
        mask = (offs < hw_hi) & mask_c[None, :]
        v = tl.load(x_base + offs.to(tl.int64) * sxhw, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_base + offs.to(tl.int64) * syhw, (v * g[None, :] + t[None, :]).to(y_ptr.dtype.element_ty),
                 mask=mask)


def scale_channels(x: torch.Tensor, gate: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None
                   ) -> torch.Tensor:
    b, c, h, w = x.shape
    hw = h * w
    y = empty_dense_like(x)
    block_c, block_hw = _tile(c, hw, _channels_inner(x))
    c_blocks = triton.cdiv(c, block_c)
    per_split, n_split = _tile_splits(hw, block_hw)
    dummy = gate  # never read when the flag is off
    _scale_fwd_kernel[(b, c_blocks, n_split)](
        x, y, gate.contiguous(), dummy if scale is None else scale.contiguous(),
        dummy if shift is None else shift.contiguous(), c, hw, *flat_strides(x), *flat_strides(y), per_split,
        HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None, BLOCK_C=block_c, BLOCK_HW=block_hw,
        num_warps=_warps(block_c, block_hw))
    return y


@triton.jit(do_not_specialize=["C", "HW", "sgb", "sxb", "sdb", "hw_per_split", "n_split"])
def _scale_bwd_kernel(g_ptr, x_ptr, dx_ptr, gate_ptr, scale_ptr, pgx_ptr, pg_ptr, C, HW, sgb, sgc, sghw, sxb, sxc,
                      sxhw, sdb, sdc, sdhw, hw_per_split, n_split, HAS_SCALE: tl.constexpr, BLOCK_C: tl.constexpr,
                      BLOCK_HW: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    mask_c = offs_c < C
    k = tl.load(gate_ptr + b * C + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    if HAS_SCALE:
        k = k * tl.load(scale_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    hw_lo = split * hw_per_split
    hw_hi = tl.minimum(hw_lo + hw_per_split, HW)
    g_base = g_ptr + b * sgb + offs_c[None, :].to(tl.int64) * sgc
    x_base = x_ptr + b * sxb + offs_c[None, :].to(tl.int64) * sxc
    d_base = dx_ptr + b * sdb + offs_c[None, :].to(tl.int64) * sdc
    acc_gx = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)  # per element; reduced once after the loop
    acc_g = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    for start in range(hw_lo, hw_hi, BLOCK_HW):
        offs = (start + tl.arange(0, BLOCK_HW))[:, None].to(tl.int64)
        mask = (offs < hw_hi) & mask_c[None, :]
        g = tl.load(g_base + offs * sghw, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(x_base + offs * sxhw, mask=mask, other=0.0).to(tl.float32)
        tl.store(d_base + offs * sdhw, (g * k[None, :]).to(dx_ptr.dtype.element_ty), mask=mask)
        acc_gx += g * v
        acc_g += g
    out = (b * n_split + split) * C + offs_c
    tl.store(pgx_ptr + out, tl.sum(acc_gx, axis=0), mask=mask_c)
    tl.store(pg_ptr + out, tl.sum(acc_g, axis=0), mask=mask_c)


def scale_channels_backward(grad: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, scale: torch.Tensor | None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    b, c, h, w = x.shape
    hw = h * w
    if flat_strides(grad) is None:
        grad = grad.contiguous(memory_format=torch.channels_last if _channels_inner(x) else torch.contiguous_format)
    dx = empty_dense_like(x)
    block_c, block_hw = _tile(c, hw, _channels_inner(x))
    c_blocks = triton.cdiv(c, block_c)
    per_split, n_split = _splits(b, c_blocks, hw, block_hw, x.device)
    pgx = torch.empty((b, n_split, c), dtype=torch.float32, device=x.device)
    pg = torch.empty_like(pgx)
    gate_c = gate.contiguous()
    _scale_bwd_kernel[(b, c_blocks, n_split)](
        grad, x, dx, gate_c, gate_c if scale is None else scale.contiguous(), pgx, pg, c, hw, *flat_strides(grad),
        *flat_strides(x), *flat_strides(dx), per_split, n_split, HAS_SCALE=scale is not None, BLOCK_C=block_c,
        BLOCK_HW=block_hw, num_warps=_warps(block_c, block_hw))
    gx = pgx.sum(1)  # (B, C): sum over pixels of grad * x
    dgate = gx if scale is None else gx * scale.float()
    wdtype = scale.dtype if scale is not None else x.dtype
    return (dx, dgate.to(gate.dtype), (gx * gate.float()).sum(0).to(wdtype), pg.sum((0, 1)).to(wdtype))


# --- PAT_sp's spatial gate ----------------------------------------------------------------------------------


@triton.jit
def _hardsigmoid(v):
    return tl.minimum(tl.maximum(v + 3.0, 0.0), 6.0) / 6.0


@triton.jit(do_not_specialize=["C", "HW", "szb", "syb", "srb"])
def _spatial_fwd_kernel(z_ptr, y_ptr, w_ptr, scale_ptr, shift_ptr, r_ptr, C, HW, szb, szc, szhw, syb, syc, syhw,
                        srb, src, srhw, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
                        HAS_RESIDUAL: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs = (tl.program_id(1) * BLOCK_HW + tl.arange(0, BLOCK_HW))[:, None].to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    mask = (offs < HW) & mask_c[None, :]
    wt = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    v = tl.load(z_ptr + b * szb + offs_c[None, :].to(tl.int64) * szc + offs * szhw, mask=mask, other=0.0)
    v = v.to(tl.float32)
    gate = _hardsigmoid(tl.sum(v * wt[None, :], axis=1))  # the 1-channel 1x1 conv: a dot product per pixel
    y = v * gate[:, None]
    if HAS_SCALE:
        y = y * tl.load(scale_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    if HAS_SHIFT:
        y = y + tl.load(shift_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        y = y + tl.load(r_ptr + b * srb + offs_c[None, :].to(tl.int64) * src + offs * srhw, mask=mask,
                        other=0.0).to(tl.float32)
    tl.store(y_ptr + b * syb + offs_c[None, :].to(tl.int64) * syc + offs * syhw, y.to(y_ptr.dtype.element_ty),
             mask=mask)


def _spatial_tile(c: int, hw: int) -> tuple[int, int]:
    block_c = triton.next_power_of_2(c)  # every channel of a pixel in one tile
    return block_c, max(1, min(triton.next_power_of_2(hw), TUNING["max_tile"] // block_c, 128))


def spatial_gate(z: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
    b, c, h, w = z.shape
    hw = h * w
    y = empty_dense_like(z)
    block_c, block_hw = _spatial_tile(c, hw)
    wt = weight.reshape(-1).contiguous()
    _spatial_fwd_kernel[(b, triton.cdiv(hw, block_hw))](
        z, y, wt, wt if scale is None else scale.contiguous(), wt if shift is None else shift.contiguous(),
        z if residual is None else residual, c, hw, *flat_strides(z), *flat_strides(y),
        *flat_strides(z if residual is None else residual), HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, HAS_RESIDUAL=residual is not None, BLOCK_C=block_c, BLOCK_HW=block_hw,
        num_warps=_warps(block_c, block_hw))
    return y


@triton.jit(do_not_specialize=["C", "HW", "sgb", "szb", "sdb", "hw_per_split", "n_split"])
def _spatial_bwd_kernel(g_ptr, z_ptr, dz_ptr, w_ptr, scale_ptr, pw_ptr, ps_ptr, pt_ptr, C, HW, sgb, sgc, sghw,
                        szb, szc, szhw, sdb, sdc, sdhw, hw_per_split, n_split, HAS_SCALE: tl.constexpr,
                        BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    wt = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    s = tl.full([BLOCK_C], 1.0, dtype=tl.float32)
    if HAS_SCALE:
        s = tl.load(scale_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    coff = offs_c[None, :].to(tl.int64)
    g_base = g_ptr + b * sgb + coff * sgc
    z_base = z_ptr + b * szb + coff * szc
    d_base = dz_ptr + b * sdb + coff * sdc
    acc_w = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)  # per element; reduced over pixels once at the end
    acc_s = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    acc_t = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
    hw_lo = split * hw_per_split
    hw_hi = tl.minimum(hw_lo + hw_per_split, HW)
    for start in range(hw_lo, hw_hi, BLOCK_HW):
        offs = (start + tl.arange(0, BLOCK_HW))[:, None].to(tl.int64)
        mask = (offs < hw_hi) & mask_c[None, :]
        go = tl.load(g_base + offs * sghw, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(z_base + offs * szhw, mask=mask, other=0.0).to(tl.float32)
        logits = tl.sum(v * wt[None, :], axis=1)
        gate = _hardsigmoid(logits)
        u = go * s[None, :]
        # d(logit) = sum_c u_c z_c * hardsigmoid'(logit); the derivative is 1/6 strictly inside (-3, 3).
        dlogits = tl.where((logits > -3.0) & (logits < 3.0), tl.sum(u * v, axis=1) / 6.0, 0.0)
        dz = u * gate[:, None] + dlogits[:, None] * wt[None, :]
        tl.store(d_base + offs * sdhw, dz.to(dz_ptr.dtype.element_ty), mask=mask)
        acc_w += dlogits[:, None] * v
        acc_s += go * v * gate[:, None]
        acc_t += go
    out = (b * n_split + split) * C + offs_c
    tl.store(pw_ptr + out, tl.sum(acc_w, axis=0), mask=mask_c)
    tl.store(ps_ptr + out, tl.sum(acc_s, axis=0), mask=mask_c)
    tl.store(pt_ptr + out, tl.sum(acc_t, axis=0), mask=mask_c)


def spatial_gate_backward(grad: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    b, c, h, w = z.shape
    hw = h * w
    if flat_strides(grad) is None:
        grad = grad.contiguous(memory_format=torch.channels_last if _channels_inner(z) else torch.contiguous_format)
    dz = empty_dense_like(z)
    block_c, block_hw = _spatial_tile(c, hw)
    per_split, n_split = _splits(b, 1, hw, block_hw, z.device)
    parts = torch.empty((3, b * n_split, c), dtype=torch.float32, device=z.device)
    wt = weight.reshape(-1).contiguous()
    _spatial_bwd_kernel[(b, n_split)](
        grad, z, dz, wt, wt if scale is None else scale.contiguous(), parts[0], parts[1], parts[2], c, hw,
        *flat_strides(grad), *flat_strides(z), *flat_strides(dz), per_split, n_split, HAS_SCALE=scale is not None,
        BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=_warps(block_c, block_hw))
    dw, dscale, dshift = (part.sum(0) for part in parts)  # three separate tensors: op outputs must not alias
    wdtype = scale.dtype if scale is not None else z.dtype
    return dz, dw.reshape(weight.shape).to(weight.dtype), dscale.to(wdtype), dshift.to(wdtype)


# --- the gated BN's per-channel affine from (B, C) statistics -------------------------------------------------


@triton.jit(do_not_specialize=["B", "C"])
def _gbn_affine_fwd_kernel(g_ptr, m_ptr, s_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, mean_ptr, var_ptr, B, C, inv_b,
                           within, eps, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    acc_gm = tl.zeros([BLOCK_B, BLOCK_C], dtype=tl.float32)
    acc_within = tl.zeros([BLOCK_B, BLOCK_C], dtype=tl.float32)
    for start in range(0, B, BLOCK_B):
        offs_b = start + tl.arange(0, BLOCK_B)
        mask = (offs_b < B)[:, None] & mask_c[None, :]
        idx = offs_b[:, None].to(tl.int64) * C + offs_c[None, :]
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        gs = g * tl.load(s_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        acc_gm += g * tl.load(m_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        acc_within += gs * gs
    mean_y = tl.sum(acc_gm, axis=0) * inv_b
    # Second pass for the between-sample variance: centred, so a mean far from zero does not cancel it away.
    acc_between = tl.zeros([BLOCK_B, BLOCK_C], dtype=tl.float32)
    for start in range(0, B, BLOCK_B):
        offs_b = start + tl.arange(0, BLOCK_B)
        mask = (offs_b < B)[:, None] & mask_c[None, :]
        idx = offs_b[:, None].to(tl.int64) * C + offs_c[None, :]
        gm = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32) * \
            tl.load(m_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        d = tl.where(mask, gm - mean_y[None, :], 0.0)
        acc_between += d * d
    var_y = (tl.sum(acc_between, axis=0) + tl.sum(acc_within, axis=0) * within) * inv_b
    scale = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32) / tl.sqrt(var_y + eps)
    shift = tl.load(b_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32) - mean_y * scale
    tl.store(scale_ptr + offs_c, scale, mask=mask_c)
    tl.store(shift_ptr + offs_c, shift, mask=mask_c)
    tl.store(mean_ptr + offs_c, mean_y, mask=mask_c)
    tl.store(var_ptr + offs_c, var_y, mask=mask_c)


def _gbn_tile(b: int, c: int) -> tuple[int, int]:
    block_c = min(triton.next_power_of_2(c), 128)
    return max(1, min(triton.next_power_of_2(b), TUNING["max_tile"] // block_c, 32)), block_c


def gated_bn_affine(gate: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor, pixels: int, eps: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    b, c = gate.shape
    out = [torch.empty(c, dtype=torch.float32, device=gate.device) for _ in range(4)]  # op outputs must not alias
    block_b, block_c = _gbn_tile(b, c)
    _gbn_affine_fwd_kernel[(triton.cdiv(c, block_c),)](
        gate.contiguous(), mean.contiguous(), std.contiguous(), weight.contiguous(), bias.contiguous(), out[0],
        out[1], out[2], out[3], b, c, 1.0 / b, (pixels - 1) / pixels, eps, BLOCK_B=block_b, BLOCK_C=block_c)
    return out[0], out[1], out[2], out[3]


@triton.jit(do_not_specialize=["B", "C"])
def _gbn_affine_bwd_kernel(ds_ptr, dt_ptr, g_ptr, m_ptr, s_ptr, w_ptr, mean_ptr, var_ptr, dg_ptr, dm_ptr, dstd_ptr,
                           dw_ptr, db_ptr, B, C, inv_b, within, eps, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    mean_y = tl.load(mean_ptr + offs_c, mask=mask_c, other=0.0)
    r = 1.0 / tl.sqrt(tl.load(var_ptr + offs_c, mask=mask_c, other=1.0) + eps)
    dt = tl.load(dt_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    ds_total = tl.load(ds_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32) - dt * mean_y
    dvar = -0.5 * ds_total * w * r * r * r
    dmean_y = -dt * w * r
    first = tl.program_id(1) == 0  # one row of programs writes the per-channel gradients
    tl.store(dw_ptr + offs_c, (ds_total * r).to(dw_ptr.dtype.element_ty), mask=mask_c & first)
    tl.store(db_ptr + offs_c, dt.to(db_ptr.dtype.element_ty), mask=mask_c & first)
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    mask = (offs_b < B)[:, None] & mask_c[None, :]
    idx = offs_b[:, None].to(tl.int64) * C + offs_c[None, :]
    g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    s = tl.load(s_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    dgm = (dmean_y[None, :] + 2.0 * dvar[None, :] * (g * m - mean_y[None, :])) * inv_b
    within_coef = (2.0 * within * inv_b) * dvar[None, :]
    tl.store(dg_ptr + idx, (dgm * m + within_coef * g * s * s).to(dg_ptr.dtype.element_ty), mask=mask)
    tl.store(dm_ptr + idx, (dgm * g).to(dm_ptr.dtype.element_ty), mask=mask)
    tl.store(dstd_ptr + idx, (within_coef * g * g * s).to(dstd_ptr.dtype.element_ty), mask=mask)


def gated_bn_affine_backward(grad_scale: torch.Tensor, grad_shift: torch.Tensor, gate: torch.Tensor,
                             mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, mean_y: torch.Tensor,
                             var_y: torch.Tensor, pixels: int, eps: float
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    b, c = gate.shape
    def dense(t: torch.Tensor) -> torch.Tensor:  # the kernel writes row-major (B, C) / (C,)
        return torch.empty(t.shape, dtype=t.dtype, device=t.device)

    dgate, dmean, dstd, dweight, dbias = dense(gate), dense(mean), dense(std), dense(weight), dense(weight)
    block_b, block_c = _gbn_tile(b, c)
    _gbn_affine_bwd_kernel[(triton.cdiv(c, block_c), triton.cdiv(b, block_b))](
        grad_scale.contiguous(), grad_shift.contiguous(), gate.contiguous(), mean.contiguous(), std.contiguous(),
        weight.contiguous(), mean_y.contiguous(), var_y.contiguous(), dgate, dmean, dstd, dweight, dbias, b, c,
        1.0 / b, (pixels - 1) / pixels, eps, BLOCK_B=block_b, BLOCK_C=block_c)
    return dgate, dmean, dstd, dweight, dbias


# --- inference: fc2 with PAT_sp's gate, its affine and the block's residual in the GEMM's epilogue --------------


@triton.jit(do_not_specialize=["M", "s_hm", "s_rm"])
def _fc2_gate_kernel(h_ptr, w_ptr, bias_ptr, gw_ptr, scale_ptr, shift_ptr, r_ptr, out_ptr, M, K, N, HALF, s_hm,
                     s_rm, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, DOT_FP32: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)  # the whole row: the gate is a dot product over its first HALF channels
    mask_m = offs_m < M
    mask_n = offs_n < N
    rows = offs_m.to(tl.int64)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(h_ptr + rows[:, None] * s_hm + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(w_ptr + offs_n[None, :] * K + offs_k[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if DOT_FP32:  # Triton's interpreter multiplies bf16 as raw bits; bf16 values are exact in float32
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(a, b, acc)
    z = acc + tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    first = offs_n < HALF
    gate_w = tl.load(gw_ptr + offs_n, mask=first, other=0.0).to(tl.float32)
    gate = _hardsigmoid(tl.sum(z * gate_w[None, :], axis=1))
    y1 = z * gate[:, None]
    if HAS_SCALE:
        y1 = y1 * tl.load(scale_ptr + offs_n, mask=first, other=1.0).to(tl.float32)[None, :]
    if HAS_SHIFT:
        y1 = y1 + tl.load(shift_ptr + offs_n, mask=first, other=0.0).to(tl.float32)[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    y = tl.where(first[None, :], y1, z) + tl.load(r_ptr + rows[:, None] * s_rm + offs_n[None, :], mask=mask,
                                                  other=0.0).to(tl.float32)
    tl.store(out_ptr + rows[:, None] * N + offs_n[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


def fc2_gate_residual(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gate_weight: torch.Tensor,
                      scale: torch.Tensor | None, shift: torch.Tensor | None, residual: torch.Tensor, half: int
                      ) -> torch.Tensor:
    m, k = h.shape
    n = weight.shape[0]
    out = torch.empty((m, n), dtype=residual.dtype, device=h.device)
    block_n = max(16, triton.next_power_of_2(n))
    block_m = 64 if block_n <= 128 else 32
    block_k = min(64, max(16, triton.next_power_of_2(k)))
    gw = gate_weight.reshape(-1).contiguous()
    _fc2_gate_kernel[(triton.cdiv(m, block_m),)](
        h, weight.contiguous(), bias.contiguous(), gw, gw if scale is None else scale.reshape(-1).contiguous(),
        gw if shift is None else shift.reshape(-1).contiguous(), residual, out, m, k, n, half, h.stride(0),
        residual.stride(0), HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None,
        DOT_FP32=os.environ.get("TRITON_INTERPRET") == "1", BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=4 if block_n <= 128 else 8)
    return out
