"""Study `dpo`: the paper's DPO baseline (TRL's DPOTrainer, objective `dpo`) trained on (prompt, gold, the
same negatives as the negative head), checkpointed at the curve's example counts and scored the same way:
as log p_dpo (mode `dpo`) and log p_dpo - log p_base (mode `dpo_base`), next to SFT / Likra / Base-Likra."""

from __future__ import annotations

from dataclasses import asdict

from likra.errors import LikraError
from likra.experiments.curve import CurveConfig, CurveRun, negative_spec
from likra.experiments.figures import base_value, baselines_line, fmt, interval_name, line_figure, mode_points
from likra.experiments.studies.base import Study, register_study
from likra.model.heads import HeadSpec
from likra.objectives.dpo import DPO_HEAD, DPOSettings
from likra.scoring.modes import BASE, Mode, Term, register_mode

DPO_MODES = ("dpo", "dpo_base")
register_mode(Mode("dpo", (Term(1, DPO_HEAD),), "DPO (log p_dpo)", "tab:orange"))
register_mode(Mode("dpo_base", (Term(1, DPO_HEAD), Term(-1, BASE)), "DPO (log p_dpo - log p_base)", "tab:brown"))


class DPOStudy(Study):
    """Its settings are the `dpo` objective's (flags `--dpo-*`, YAML `objectives: {dpo: ...}`), as for any DPO head."""

    name = "dpo"
    help = "the DPO baseline (TRL) on the same questions and negatives"

    def run(self, cfg: CurveConfig, options: None, progress: bool = True) -> dict:
        if cfg.heads is not None:  # its DPO head trains on the Likra pair's negative set (--negative-kind)
            raise LikraError("--heads: this study trains its own heads (the Likra pair and dpo, on one negative set)")
        head = HeadSpec(DPO_HEAD, objective="dpo", data=f"pairs:{negative_spec(cfg)}")
        dpo = cfg.objectives.get("dpo") or DPOSettings()
        curve = CurveRun(cfg, progress, extra_heads=[head], extra_modes=DPO_MODES).run().curve
        rows = [r for r in curve["rows"] if r["mode"] in DPO_MODES]
        curve = {**curve, "rows": [r for r in curve["rows"] if r["mode"] not in DPO_MODES]}
        return {"study": self.name, "settings": asdict(dpo), "rows": rows, "curve": curve}

    def figure(self, result: dict):
        curve, dpo_curve = result["curve"], {**result["curve"], "rows": result["rows"]}
        panels = {
            "DPO vs Likra": [
                ("SFT", mode_points(curve, "sft")),
                ("Likra", mode_points(curve, "likra")),
                ("Base-Likra", mode_points(curve, "negbase")),
                ("DPO (log p_dpo)", mode_points(dpo_curve, "dpo")),
                ("DPO (log p_dpo - log p_base)", mode_points(dpo_curve, "dpo_base")),
            ]
        }
        title = f"{curve['model']}: DPO baseline on {curve['eval_data']} (bands: {interval_name(curve)})"
        return line_figure(panels, base_value(curve), title, "training examples")

    def report(self, result: dict) -> list[str]:
        rows = [r for r in result["rows"] if r["metric"] == "acc_norm" and r["seed"] == 0]
        lines = ["| examples | DPO (log p_dpo) | DPO (log p_dpo - log p_base) |", "|---|---|---|"]
        for e in sorted({r["examples"] for r in rows}):
            get = {r["mode"]: r["value"] for r in rows if r["examples"] == e}
            lines.append(f"| {e} | {fmt(get.get('dpo'))} | {fmt(get.get('dpo_base'))} |")
        return lines + baselines_line(result["curve"])


register_study(DPOStudy())
