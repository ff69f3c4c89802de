"""Evaluation reports: JSON, a Markdown table and plots (PR and ROC curves, score histograms, examples)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..overlay import blend, colourise
from .runner import Evaluation

COLUMNS = (
    ("auprc", "AuPRC"), ("auroc", "AuROC"), ("fpr95", "FPR95"), ("siou", "sIoU"), ("ppv", "PPV"),
    ("f1_mean", "mean F1"), ("misclassification_auroc", "misclass. AuROC"), ("ause", "AuSE"),
    ("meta_auroc", "meta AuROC"), ("meta_r2", "meta R²"),
)  # fmt: skip


def _strict(value):
    """Plain JSON: non-finite numbers (an undefined metric) become null."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def as_json(evaluation: Evaluation, extra: dict | None = None) -> dict:
    return _strict(
        {
            **(extra or {}),
            "dataset": evaluation.dataset,
            "frames": evaluation.frames,
            "in_distribution": evaluation.in_distribution,
            "scores": evaluation.scores,
            "factors": evaluation.factors,
            "bootstrap": evaluation.bootstrap,
            "default": evaluation.default,
        }
    )


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and np.isfinite(value) else "n/a"


def _interval(pair) -> str:
    return f"{pair[0]:.4f}-{pair[1]:.4f}" if pair and all(np.isfinite(v) for v in pair) else "n/a"


def markdown_table(evaluation: Evaluation) -> str:
    """One row per score, best AuPRC first; higher is better except FPR95 and AuSE.  With a bootstrap,
    the AuPRC's 95 % interval and the ratio to the best softmax baseline (with its interval) too."""
    present = [(key, title) for key, title in COLUMNS if any(key in m for m in evaluation.scores.values())]
    intervals = any("auprc_ci95" in m for m in evaluation.scores.values())
    ratios = any("ratio_ci95" in m for m in evaluation.scores.values())
    extra = (["AuPRC 95 % CI"] if intervals else []) + (["÷ best softmax (95 % CI)"] if ratios else [])
    titles = [present[0][1], *extra, *(title for _, title in present[1:])]
    lines = ["| score | " + " | ".join(titles) + " |", "| --- |" + " ---: |" * len(titles)]
    ranked = sorted(evaluation.scores.items(), key=lambda item: -item[1]["auprc"])
    for name, metrics in ranked:
        cells = [_cell(metrics[key]) if key in metrics else "" for key, _ in present]
        added = [_interval(metrics.get("auprc_ci95"))] if intervals else []
        if ratios:
            added.append(f"{metrics['auprc_ratio_to_best_softmax']:.3f} ({_interval(metrics['ratio_ci95'])})")
        lines.append(f"| {name} | " + " | ".join([cells[0], *added, *cells[1:]]) + " |")
    return "\n".join(lines) + "\n"


def factor_table(evaluation: Evaluation) -> str:
    """Per gradient score (the weights' gradient), its class factor ||s - y||_p and input factor
    ||input||_p scored alone, and which way the input factor points on this model."""
    if not evaluation.factors:
        return ""
    lines = [
        "| gradient score | AuPRC | class factor AuPRC | AuROC | FPR95 | input factor AuPRC | AuROC | FPR95 "
        "| input factor points |",
        "| --- |" + " ---: |" * 7 + " --- |",
    ]
    ranked = sorted(evaluation.factors.items(), key=lambda item: -item[1]["class_factor"]["auprc"])
    for name, report in ranked:
        product = evaluation.scores.get(name, {}).get("auprc")
        cells = [_cell(product) if product is not None else "n/a"]
        for part in ("class_factor", "input_factor"):
            cells += [_cell(report[part][key]) for key in ("auprc", "auroc", "fpr95")]
        points = report["input_points"]
        if "input_factor_negated" in report:
            points += f" (negated: AuPRC {_cell(report['input_factor_negated']['auprc'])})"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {points} |")
    return "\n".join(lines) + "\n"


def default_text(evaluation: Evaluation) -> str:
    """Which score the default is, by which rule, with its interval and FPR95."""
    chosen = evaluation.default
    if not chosen:
        return ""
    best = evaluation.scores[chosen["best"]]
    text = (
        f"Default score: **{chosen['score']}** (AuPRC {chosen['auprc']:.4f}, 95 % CI "
        f"{_interval(chosen['auprc_ci95'])}, FPR95 {chosen['fpr95']:.4f}). Rule: {chosen['rule']}. "
        f"Best AuPRC: {chosen['best']} ({best['auprc']:.4f}, 95 % CI {_interval(chosen['best_auprc_ci95'])}); "
    )
    within = chosen["gradient_scores_within_interval"]
    text += f"gradient scores within it: {', '.join(within)}." if within else "no gradient score within it."
    return text + "\n"


def _thin(x: np.ndarray, y: np.ndarray, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= points:
        return x, y
    keep = np.unique(np.linspace(0, x.size - 1, points).astype(int))
    return x[keep], y[keep]


def plot_all(evaluation: Evaluation, out: Path, colours, top: int = 6) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    ranked = sorted(evaluation.scores, key=lambda n: -evaluation.scores[n]["auprc"])
    shown = ranked[:top] + [n for n in ("msp", "entropy", "max_logit") if n in ranked[top:]]
    written = []

    figure, (pr, roc) = plt.subplots(1, 2, figsize=(12, 5))
    for name in shown:
        counts = evaluation.counts[name]
        pr.plot(*_thin(np.concatenate([[0.0], counts.recall]), np.concatenate([[1.0], counts.precision])), label=name)
        roc.plot(*_thin(np.concatenate([[0.0], counts.fpr, [1.0]]), np.concatenate([[0.0], counts.recall, [1.0]])))
    pr.set(xlabel="recall", ylabel="precision", title=f"precision-recall, {evaluation.dataset}")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.legend(fontsize=8)
    figure.tight_layout()
    written.append(out / "curves.png")
    figure.savefig(written[-1], dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3), squeeze=False)
    for axis, name in zip(axes[0], shown, strict=True):
        histogram = evaluation.histograms[name]
        edges = np.asarray(histogram["edges"])
        for kind, colour in (("in_distribution", "tab:blue"), ("ood", "tab:red")):
            counts = np.asarray(histogram[kind], dtype=float)
            axis.stairs(counts / max(1.0, counts.sum()), edges, color=colour, label=kind.replace("_", " "))
        axis.set_title(name, fontsize=8)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    written.append(out / "histograms.png")
    figure.savefig(written[-1], dpi=110)
    plt.close(figure)

    if evaluation.examples:
        best = ranked[0]
        threshold = evaluation.scores[best].get("threshold")
        rows = len(evaluation.examples)
        figure, axes = plt.subplots(rows, 4, figsize=(14, 2.8 * rows), squeeze=False)
        for row, example in zip(axes, evaluation.examples, strict=True):
            score = example["scores"][best]
            row[0].imshow(example["image"])
            row[1].imshow(blend(example["image"], colourise(example["labels"], colours)))
            finite = score[np.isfinite(score)]
            row[2].imshow(score, cmap="inferno", vmin=np.percentile(finite, 1), vmax=np.percentile(finite, 99))
            row[3].imshow(np.where(example["ood"] == 1, 2, (score > threshold).astype(int)), cmap="viridis", vmax=2)
            for axis, title in zip(row, ("image", "labels", best, "mask (yellow: OoD truth)"), strict=True):
                axis.set_title(f"{example['name']}: {title}", fontsize=7)
                axis.axis("off")
        figure.tight_layout()
        written.append(out / "examples.png")
        figure.savefig(written[-1], dpi=90)
        plt.close(figure)
    return written


def write_report(evaluation: Evaluation, out: Path, colours, extra: dict | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(as_json(evaluation, extra), indent=1, allow_nan=False))
    table = markdown_table(evaluation)
    header = f"# {evaluation.dataset}, {evaluation.frames} frames\n\n"
    if evaluation.in_distribution:
        header += f"In-distribution: mIoU {evaluation.in_distribution['miou']:.4f}, "
        header += f"ECE {evaluation.in_distribution['ece']:.4f}.\n\n"
    sections = [header + table]
    if evaluation.default:
        bootstrap = evaluation.bootstrap
        sections.append(
            f"## Default\n\n{default_text(evaluation)}\nIntervals: frame bootstrap, {bootstrap['draws']} draws, seed "
            f"{bootstrap['seed']}, AuPRC on {bootstrap['bins']} score bins per score (largest difference of the "
            f"binned from the exact full-set AuPRC: {bootstrap['largest_binning_error']:.2g}); ratios are to "
            f"{bootstrap.get('best_softmax', 'n/a')}, draw by draw.\n"
        )
    if evaluation.factors:
        sections.append(
            "## Factor report\n\nEach gradient score is ||s - y||_p (class factor; also the bias gradient) times "
            "||input||_p (input factor); each scored alone, high = OoD.\n\n" + factor_table(evaluation)
        )
    (out / "results.md").write_text("\n".join(sections))
    return [out / "results.json", out / "results.md", *plot_all(evaluation, out, colours)]
