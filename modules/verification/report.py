"""Verification report: a plain-text score table and one PNG per model (matplotlib, Agg).

The PNG has RMSE by lead time, model (solid) vs persistence (dashed), one colour per
variable; below it, one bar chart per variable of RMSE per site over all lead times.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import matplotlib

from graphcast_contract.sources import InputSource
from modules.verification.scores import Score

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)

_HEADER = f"{'':<16}{'n':>7}{'bias':>9}{'MAE':>9}{'RMSE':>9}{'pers.RMSE':>11}{'skill':>8}"


def variable_label(score: Score) -> str:
    """`2m_temperature`, or `temperature 850 hPa` for a pressure level."""
    return score.variable if score.level == 0 else f"{score.variable} {score.level} hPa"


def model_label(score: Score) -> str:
    """The model, with its source unless ERA5: `GraphCast_operational (ifs-opendata)`."""
    return score.model if score.source == InputSource.ERA5 else f"{score.model} ({score.source})"


def _by_model_variable(scores: list[Score]) -> dict[tuple[str, str], list[Score]]:
    groups: dict[tuple[str, str], list[Score]] = defaultdict(list)
    for score in scores:
        groups[(model_label(score), variable_label(score))].append(score)
    return groups


def _line(label: str, s: Score) -> str:
    skill = "-" if s.skill is None else f"{s.skill:.3f}"
    return (f"{label:<16}{s.n:>7}{s.bias:>9.3f}{s.mae:>9.3f}{s.rmse:>9.3f}"
            f"{s.persistence_rmse:>11.3f}{skill:>8}")


def format_table(scores: list[Score]) -> str:
    """Per model and variable: scores by lead time (all sites), then by site (all leads)."""
    if not scores:
        return "No verified forecasts yet."
    blocks = []
    for (model, label), group in _by_model_variable(scores).items():
        lines = [f"{model} - {label} ({group[0].unit}); skill = 1 - RMSE/RMSE_persistence",
                 "by lead time, all sites", _HEADER]
        lines += [_line(f"+{s.lead_hours}h", s) for s in group
                  if s.site is None and s.lead_hours is not None]
        lines += ["by site, all lead times", _HEADER]
        lines += [_line(s.site, s) for s in group if s.lead_hours is None and s.site]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_plots(scores: list[Score], plot_dir: Path) -> list[Path]:
    """Write `verification_<model>.png` for each model in `scores`; return the paths."""
    per_model: dict[str, list[Score]] = defaultdict(list)
    for score in scores:
        per_model[model_label(score)].append(score)
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, model_scores in per_model.items():
        path = plot_dir / f"verification_{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}.png"
        _plot_model(model, model_scores, path)
        paths.append(path)
    return paths


def _plot_model(model: str, scores: list[Score], path: Path) -> None:
    """One PNG; site and model names are plain text (a `$` in one must not start mathtext,
    whose parser fails on unbalanced dollars)."""
    with plt.rc_context({"text.parse_math": False}):
        _draw_model(model, scores, path)


def _draw_model(model: str, scores: list[Score], path: Path) -> None:
    groups = {label: group for (_, label), group in _by_model_variable(scores).items()}
    fig, axes = plt.subplots(len(groups) + 1, 1, figsize=(10, 4 + 3.5 * len(groups)),
                             squeeze=False)
    lead_ax = axes[0, 0]
    leads: set[int] = set()
    for colour, (label, group) in enumerate(groups.items()):
        by_lead = sorted((s for s in group if s.site is None and s.lead_hours is not None),
                         key=lambda s: s.lead_hours)
        leads.update(s.lead_hours for s in by_lead)
        hours = [s.lead_hours for s in by_lead]
        lead_ax.plot(hours, [s.rmse for s in by_lead], "o-", color=f"C{colour}",
                     label=f"{label} ({model})")
        lead_ax.plot(hours, [s.persistence_rmse for s in by_lead], "s--", color=f"C{colour}",
                     label=f"{label} (persistence)")
        _site_bars(axes[colour + 1, 0], label, group)
    units = sorted({s.unit for s in scores})
    lead_ax.set(title=f"{model}: RMSE by lead time, all sites", xlabel="lead time (h)",
                ylabel=f"RMSE ({', '.join(units)})", xticks=sorted(leads))
    lead_ax.set_ylim(bottom=0)
    lead_ax.legend(fontsize="small")
    lead_ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def _site_bars(ax: plt.Axes, label: str, group: list[Score]) -> None:
    by_site = sorted((s for s in group if s.lead_hours is None and s.site),
                     key=lambda s: s.site)
    x = range(len(by_site))
    ax.bar([i - 0.2 for i in x], [s.rmse for s in by_site], width=0.4, label="model")
    ax.bar([i + 0.2 for i in x], [s.persistence_rmse for s in by_site], width=0.4,
           label="persistence", color="0.6")
    ax.set_xticks(list(x), [s.site for s in by_site], rotation=45, ha="right",
                  fontsize="small")
    unit = group[0].unit
    ax.set(title=f"{label}: RMSE by site, all lead times", ylabel=f"RMSE ({unit})")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
