"""The fused head as one Triton kernel: logits, labels' norm and feature norm from one read of the features.

Imported only when the fused path runs (Triton is optional).  With
``TRITON_INTERPRET=1`` set before this module is imported, the same kernel runs
on CPU tensors in Triton's interpreter: that is how it is tested without a GPU.

Per block of pixels of one image the kernel streams the last layer's input
(K channels) once, in its own dtype (bfloat16, float16 or float32):

- the last layer's product ``W f`` accumulated in float32 (``tl.dot``), for
  G = s*s kernel taps of a transposed conv with kernel == stride s (G = 1 for
  a 1x1 conv), padded to G_PAD taps of C_PAD rows each (powers of two);
- ``||f||_p`` with a running maximum (like an online softmax), so that no
  power over- or underflows for any p (skipped for the bias gradient, which
  has no input factor);
- per tap: softmax, argmax and ``log ||s - y||_p`` from the logits in the log
  domain (``1 - s_k`` as the sum of the other classes, never ``1 - s_k``), or
  the paper's stand-in for ``s - y`` in reference mode (``s * (1 - y)``,
  ``(C - 1)/C * s``);

and writes the logits (float32) and the log gradient norm (float32) at the
layer's output resolution: of the weights ``log ||s - y||_p + log ||f||_p``,
of the bias ``log ||s - y||_p``, or of the whole layer
``log ||s - y||_p + log(||f||_p^p + 1) / p`` (GRADIENT_OF 0, 1, 2).
"""

# ruff: noqa: N803, N806 - Triton's convention: compile-time constants in capitals

from __future__ import annotations

import math

import triton
import triton.language as tl

LN2 = 0.6931471805599453


@triton.jit
def fused_head_kernel(
    features_ptr,  # N x K x H x W, contiguous
    weight_ptr,  # (G_PAD * C_PAD) x K, the features' dtype; padded taps and classes are zero rows
    bias_ptr,  # C, float32 (unused without HAS_BIAS)
    logits_ptr,  # N x C x (H*S) x (W*S), float32
    score_ptr,  # N x (H*S) x (W*S), float32
    channels,  # K
    height,
    width,
    p,
    log_class_scale,  # added to the class factor's log: log((C - 1)/C) for the reference uniform label, else 0
    C: tl.constexpr,
    C_PAD: tl.constexpr,
    S: tl.constexpr,
    G_PAD: tl.constexpr,
    UNIFORM: tl.constexpr,
    REFERENCE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    GRADIENT_OF: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    G: tl.constexpr = S * S
    pixels = height * width
    image = tl.program_id(1)
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    in_image = pix < pixels
    rows = tl.arange(0, G_PAD * C_PAD)
    acc = tl.zeros((G_PAD * C_PAD, BLOCK_P), dtype=tl.float32)
    run_max = tl.zeros((BLOCK_P,), dtype=tl.float32)
    run_sum = tl.zeros((BLOCK_P,), dtype=tl.float32)
    base = features_ptr + image.to(tl.int64) * channels * pixels
    for k0 in range(0, channels, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_in = ks < channels
        f = tl.load(base + ks[:, None] * pixels + pix[None, :], mask=k_in[:, None] & in_image[None, :], other=0.0)
        w = tl.load(weight_ptr + rows[:, None] * channels + ks[None, :], mask=k_in[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(w, f, acc, input_precision="ieee")
        else:
            acc = tl.dot(w, f, acc)
        if GRADIENT_OF != 1:  # ||f||_p: sum of (|f| / running max)^p, rescaled when the maximum grows.
            magnitude = tl.abs(f.to(tl.float32))
            new_max = tl.maximum(run_max, tl.max(magnitude, axis=0))
            log_new = tl.log2(tl.where(new_max > 0, new_max, 1.0))
            run_sum = run_sum * tl.exp2(p * (tl.log2(run_max) - log_new))
            powers = tl.where(magnitude > 0, tl.exp2(p * (tl.log2(magnitude) - log_new[None, :])), 0.0)
            run_sum += tl.sum(powers, axis=0)
            run_max = new_max
    log_feature = tl.where(run_max > 0, (tl.log2(run_sum) / p + tl.log2(run_max)) * LN2, -float("inf"))

    classes = tl.arange(0, C_PAD)
    is_class = (classes < C)[None, :, None]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + classes, mask=classes < C, other=0.0)
        z = tl.reshape(acc, (G_PAD, C_PAD, BLOCK_P)) + bias[None, :, None]
    else:
        z = tl.reshape(acc, (G_PAD, C_PAD, BLOCK_P))
    z = tl.where(is_class, z, -float("inf"))
    top = tl.max(z, axis=1)
    e = tl.exp(z - top[:, None, :])
    total = tl.sum(e, axis=1)
    log_total = tl.log(total)
    log_probs = z - top[:, None, :] - log_total[:, None, :]
    if UNIFORM and REFERENCE:  # (C - 1)/C * s: log||s||_p here, log((C - 1)/C) added on the host's behalf below
        terms = tl.where(is_class, p * log_probs, -float("inf"))
    elif UNIFORM:
        distance = tl.abs(e / total[:, None, :] - 1.0 / C)
        terms = tl.where(is_class & (distance > 0), p * tl.log(distance), -float("inf"))
    else:
        label = tl.argmax(z, axis=1)
        is_label = classes[None, :, None] == label[:, None, :]
        if REFERENCE:  # s * (1 - y): the predicted entry is 0
            terms = tl.where(is_label, -float("inf"), p * log_probs)
        else:  # s - y: the predicted entry is s_k - 1, of size 1 - s_k = the sum of the others
            log_others = tl.log(tl.sum(tl.where(is_label, 0.0, e), axis=1)) - log_total
            terms = tl.where(is_label, p * log_others[:, None, :], p * log_probs)
        terms = tl.where(is_class, terms, -float("inf"))
    peak = tl.max(terms, axis=1)
    peak = tl.where(peak > -float("inf"), peak, 0.0)
    log_class = (peak + tl.log(tl.sum(tl.exp(terms - peak[:, None, :]), axis=1))) / p + log_class_scale
    if GRADIENT_OF == 0:
        score = log_class + log_feature[None, :]
    elif GRADIENT_OF == 1:
        score = log_class
    else:  # log(||f||^p + 1) / p = (m + log(exp(p log||f|| - m) + exp(-m))) / p, m = max(p log||f||, 0)
        powered = p * log_feature
        top_power = tl.maximum(powered, 0.0)
        log_layer = (top_power + tl.log(tl.exp(powered - top_power) + tl.exp(-top_power))) / p
        score = log_class + log_layer[None, :]

    # Tap g = (a, b) of input pixel (h, w) lands on output pixel (h*S + a, w*S + b).
    taps = tl.arange(0, G_PAD)
    stored = (taps < G)[:, None] & in_image[None, :]
    out_pix = ((pix // width)[None, :] * S + (taps // S)[:, None]) * (width * S) + (
        (pix % width)[None, :] * S + (taps % S)[:, None]
    )
    out_pixels = pixels * G
    tl.store(score_ptr + image.to(tl.int64) * out_pixels + out_pix, score, mask=stored)
    logits_base = logits_ptr + image.to(tl.int64) * C * out_pixels
    offsets = classes[None, :, None] * out_pixels + out_pix[:, None, :]
    tl.store(logits_base + offsets, z, mask=is_class & stored[:, None, :])


def launch(features, weight, bias, logits, score, p: float, classes: int, classes_padded: int, stride: int,
           taps_padded: int, uniform: bool, gradient_of: int = 0, reference: bool = False, block_p: int = 64,
           block_k: int = 32) -> None:  # fmt: skip
    """Run the kernel over every image and block of pixels (shapes checked by the caller)."""
    batch, channels, height, width = features.shape
    grid = (triton.cdiv(height * width, block_p), batch)
    log_class_scale = math.log((classes - 1) / classes) if uniform and reference and classes > 1 else 0.0
    fused_head_kernel[grid](
        features, weight, bias if bias is not None else score, logits, score,
        channels, height, width, float(p), log_class_scale,
        C=classes, C_PAD=classes_padded, S=stride, G_PAD=taps_padded, UNIFORM=uniform, REFERENCE=reference,
        HAS_BIAS=bias is not None,
        GRADIENT_OF=gradient_of,
        IEEE=features.dtype.itemsize == 4, BLOCK_P=block_p, BLOCK_K=block_k,
    )  # fmt: skip
