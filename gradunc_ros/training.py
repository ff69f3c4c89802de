"""Training a registered model on a CamVid-style folder under the held-out-class protocol.

Classes 9 and 10 (and void, 11) are ignored by the loss, so the net never
learns them: they are the out-of-distribution objects at evaluation time.
Resumable (``last.pt`` holds weights, optimiser, schedule, RNG states),
seedable, mixed precision (bfloat16) on CUDA.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .evaluation.datasets import CAMVID_TRAIN_TARGETS, IGNORE, Frame, camvid_frames
from .evaluation.segmentation import miou_over_frames
from .imageio import read_label, read_rgb
from .models.card import ModelCard
from .models.checkpoints import save_safetensors
from .models.registry import get_architecture
from .pipeline import network_input, resolve_device


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "erfnet"
    epochs: int = 150
    batch_size: int = 8
    crop: tuple[int, int] = (240, 320)  # height, width
    scale: tuple[float, float] = (0.5, 1.0)  # random rescaling of the full frame before cropping
    val_input: tuple[int, int] = (240, 320)  # network input at validation (height, width)
    lr: float = 5e-4
    weight_decay: float = 1e-4
    class_weight_c: float = 1.10  # ENet class weighting 1 / ln(c + frequency); 0 disables it
    val_every: int = 5
    seed: int = 0
    device: str = "auto"
    max_frames: int | None = None  # use only the first N frames of each split (smoke runs)
    extra: dict = field(default_factory=dict)


class CamVidTrainSet:
    """All training frames in memory (CamVid is small), with the protocol's targets."""

    def __init__(self, frames: list[Frame]) -> None:
        self.images = [read_rgb(f.image) for f in frames]
        self.targets = [CAMVID_TRAIN_TARGETS[read_label(f.label)] for f in frames if f.label is not None]
        if len(self.targets) != len(self.images):
            raise FileNotFoundError("every training frame needs a label image")

    def class_frequencies(self, num_classes: int) -> np.ndarray:
        counts = np.zeros(num_classes, dtype=np.int64)
        for target in self.targets:
            counts += np.bincount(target[target != IGNORE].ravel(), minlength=num_classes)[:num_classes]
        return counts / max(1, counts.sum())


def augment(
    image: np.ndarray, target: np.ndarray, rng: np.random.Generator, crop: tuple[int, int], scale: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Random rescale, random crop (padding with ignore where the frame is smaller), flip, colour jitter."""
    factor = rng.uniform(*scale)
    h, w = target.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    target = cv2.resize(target, size, interpolation=cv2.INTER_NEAREST)
    ch, cw = crop
    pad_h, pad_w = max(0, ch - target.shape[0]), max(0, cw - target.shape[1])
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(124, 116, 104))
        target = cv2.copyMakeBorder(target, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE)
    top = int(rng.integers(0, target.shape[0] - ch + 1))
    left = int(rng.integers(0, target.shape[1] - cw + 1))
    image, target = image[top : top + ch, left : left + cw], target[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        image, target = image[:, ::-1], target[:, ::-1]
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), np.ascontiguousarray(target)


@torch.no_grad()
def evaluate_miou(
    model: nn.Module, card: ModelCard, frames: list[Frame], device: torch.device, val_input: tuple[int, int]
) -> tuple[float, list[float]]:
    """Mean IoU over the model's classes at the labels' own resolution (logits upsampled)."""
    model.eval()

    def predict_labels(image: np.ndarray) -> np.ndarray:
        x = network_input(torch.from_numpy(image)[None].to(device), card, val_input)
        logits = F.interpolate(model(x).float(), image.shape[:2], mode="bilinear", align_corners=False)
        return logits.argmax(1)[0].cpu().numpy()

    return miou_over_frames(frames, predict_labels, card.num_classes)


def _batch(dataset: CamVidTrainSet, order: list[int], rng: np.random.Generator, config: TrainConfig):
    pairs = [augment(dataset.images[i], dataset.targets[i], rng, config.crop, config.scale) for i in order]
    images = torch.from_numpy(np.stack([p[0] for p in pairs]))
    targets = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
    return images, targets


def _atomic_save(obj: object, path: Path) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(obj, partial)
    partial.replace(path)


def train(config: TrainConfig, resume: bool = True, log=print) -> dict:
    """Train (or resume from ``<out>/last.pt``); returns the final summary dict."""
    architecture = get_architecture(config.model)
    card = architecture.checkpoint_card  # the classes it is trained for; the pipeline's pre-processing
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    random.seed(config.seed)
    np_rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)

    train_frames = camvid_frames(config.data, "train")[: config.max_frames]
    val_frames = camvid_frames(config.data, "val")[: config.max_frames]
    dataset = CamVidTrainSet(train_frames)
    num_classes = card.num_classes
    model = architecture.build(num_classes).to(device)
    weights = None
    if config.class_weight_c > 0:
        frequencies = dataset.class_frequencies(num_classes)
        weights = torch.tensor(1.0 / np.log(config.class_weight_c + frequencies), dtype=torch.float32, device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(dataset.images) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: (1 - min(step, total_steps) / total_steps) ** 0.9
    )
    state = {"epoch": 0, "step": 0, "best_miou": -1.0, "seconds": 0.0}

    checkpoint_path = out / "last.pt"
    if resume and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        schedule.load_state_dict(checkpoint["schedule"])
        state = checkpoint["state"]
        np_rng.bit_generator.state = checkpoint["numpy_rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        random.setstate(checkpoint["python_rng"])
        log(f"resumed from {checkpoint_path} at epoch {state['epoch']}, step {state['step']}")

    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    history = out / "history.jsonl"
    while state["epoch"] < config.epochs:
        epoch_start = time.perf_counter()
        model.train()
        order = np_rng.permutation(len(dataset.images))
        losses = []
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {state['epoch'] + 1}/{config.epochs}", leave=False, mininterval=5
        )
        for index in bar:
            images, targets = _batch(
                dataset, order[index * config.batch_size : (index + 1) * config.batch_size], np_rng, config
            )
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast:
                logits = model(network_input(images, card, tuple(images.shape[1:3])))
            loss = F.cross_entropy(logits.float(), targets, weight=weights, ignore_index=IGNORE)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at step {state['step']}")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            state["step"] += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        state["epoch"] += 1
        state["seconds"] += time.perf_counter() - epoch_start
        record = {
            "epoch": state["epoch"],
            "step": state["step"],
            "loss": float(np.mean(losses)),
            "seconds": state["seconds"],
        }
        if state["epoch"] % config.val_every == 0 or state["epoch"] == config.epochs:
            miou, ious = evaluate_miou(model, card, val_frames, device, config.val_input)
            record.update(val_miou=miou, val_iou=ious)
            if miou > state["best_miou"]:
                state["best_miou"] = miou
                save_safetensors(
                    model, out / "best.safetensors", model_name=architecture.name, class_names=card.class_names,
                    extra={"val_miou": f"{miou:.4f}", "epoch": str(state["epoch"])},
                )  # fmt: skip
        log(json.dumps(record))
        with history.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        _atomic_save(
            {
                "model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "state": state, "numpy_rng": np_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(), "config": asdict(config),
            },
            checkpoint_path,
        )  # fmt: skip
    return {
        "best_miou": state["best_miou"],
        "epochs": state["epoch"],
        "seconds": state["seconds"],
        "device": str(device),
    }
