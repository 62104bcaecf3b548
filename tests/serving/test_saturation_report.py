"""The saturation report with its admission on/off rows (benchmarks.saturation_bench, pure parts)."""
from __future__ import annotations

from rich.console import Console

from benchmarks.admission_phase import AdmissionRow
from benchmarks.saturation_bench import SaturationReport, SaturationSettings, render
from capacity.calibration import load_calibration
from serving.benchmarking import LoadStep, saturation_of


def _step(offered: float, p99: float, tiers: dict[str, int], errors: int = 0) -> LoadStep:
    answered = sum(tiers.values())
    return LoadStep(offered_qps=offered, achieved_qps=answered / 10, as_asked_qps=tiers.get("full", 0) / 10, p99_ms=p99,
                    errors=errors, requests=answered + errors, cpu_utilisation=0.9, tiers=tiers)


def test_the_admission_rows_are_reported_beside_the_ramp() -> None:
    steps = (_step(50, 20, {"full": 500}), _step(100, 400, {"full": 700, "segment": 300}))
    rows = (AdmissionRow("on", _step(105, 60, {"full": 400, "segment": 650})),
            AdmissionRow("off", _step(105, 2900, {"full": 300, "segment": 400}, errors=300)))
    report = SaturationReport(machine="m", calibration=load_calibration(None), predicted_qps=80.0, steps=steps,
                              saturation=saturation_of(steps, slo_ms=150), settings=SaturationSettings(), admission=rows)
    out = report.to_dict()["admission"]
    assert [r["admission"] for r in out] == ["on", "off"] and out[1]["p99_ms"] == 2900
    console = Console(record=True, width=400)
    for table in render(report):
        console.print(table)
    text = " ".join(console.export_text().split())
    assert "admission control, same run" in text and "1.5x the full-ranking capacity" in text
    assert "f38 s62" in text and "f43 s57" in text
