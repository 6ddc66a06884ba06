"""Study `contamination`: curves with a fraction of the negatives replaced by the questions' correct answers
(exact counts, nested sets: the replaced negatives at a smaller rate are among those at a larger one)."""

from __future__ import annotations

from likra.config import Fraction, option, settings
from likra.experiments.curve import CurveConfig
from likra.experiments.studies.base import Study, register_study
from likra.experiments.studies.negatives import variant_curves, variant_figure, variant_table


@settings
class ContaminationSettings:
    rates: list[Fraction] = option(
        default_factory=lambda: [0.0, 0.1, 0.25, 0.5], help="fractions of negatives replaced by correct answers"
    )


class ContaminationStudy(Study):
    name = "contamination"
    help = "curves with a fraction of negatives replaced by correct answers"
    settings = ContaminationSettings

    def run(self, cfg: CurveConfig, options: ContaminationSettings, progress: bool = True) -> dict:
        variants = [{"contamination": float(r)} for r in options.rates]
        return {"study": self.name, **variant_curves(cfg, variants, "contamination", progress)}

    def figure(self, result: dict):
        return variant_figure(result)

    def report(self, result: dict) -> list[str]:
        return variant_table(result)


register_study(ContaminationStudy())
