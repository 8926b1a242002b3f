"""Export -> simulated annotators (known preference, one answering at random) -> import -> report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from human_eval_helpers import export_synthetic_study

from empdg.config.human_eval_schema import HumanReportConfig, HumanStudyConfig
from empdg.evaluation.human_export import export_study
from empdg.evaluation.human_report import log_report, report_study
from empdg.evaluation.human_simulation import (
    SimulatedAnnotator,
    simulate_answers,
    write_csv_answers,
    write_label_studio_export,
)
from empdg.evaluation.release_format import read_predictions

ANNOTATORS = [SimulatedAnnotator(f"good{i}", prefers="sys2", p_prefer=0.8) for i in range(3)]
ANNOTATORS.append(SimulatedAnnotator("careless", random=True))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_synthetic_study(tmp_path_factory.mktemp("human"), n_systems=3)


def _files(study: Path, out: Path, form: str) -> list[Path]:
    answers = simulate_answers(study, ANNOTATORS, seed=7)
    out.mkdir(exist_ok=True)
    if form == "label_studio":
        return [
            write_label_studio_export(study, answers, kind, out / f"{kind}.json") for kind in ("pairwise", "ratings")
        ]
    return [write_csv_answers(study, answers[who.name], who.name, kind, out / f"{who.name}-{kind}.csv")
            for who in ANNOTATORS for kind in ("pairwise", "ratings")]  # fmt: skip


@pytest.mark.parametrize("form", ["label_studio", "csv"])
def test_the_preferred_system_wins_and_the_careless_annotator_is_excluded(study: Path, tmp_path: Path, form: str):
    report, files = report_study(study, _files(study, tmp_path / "ann", form), HumanReportConfig(n_bootstrap=300),
                                 tmp_path / "report")  # fmt: skip
    careless = "4" if form == "label_studio" else "careless"  # Label Studio names its users by id
    flagged = [a.annotator for a in report.attention if a.flagged]
    assert flagged == report.excluded == [careless]
    checks = {a.annotator: (a.passed, a.answered) for a in report.attention}
    # ceil(0.25 × 36) checks among the pairwise tasks and as many among the ratings
    assert all(checks[name] == (18, 18) for name in checks if name != careless)
    assert checks[careless][0] < 0.8 * checks[careless][1]
    tasks_per_annotator = (36 + 9 + 36 + 9) * 3  # (pairwise + checks + ratings + checks) × criteria
    assert (report.answers_excluded, report.answers_used) == (tasks_per_annotator, 3 * tasks_per_annotator)
    for criterion in ("empathy", "relevance", "fluency"):
        strengths = {s: e["value"] for s, e in report.strengths[criterion].items()}
        assert max(strengths, key=strengths.get) == "sys2"
        for row in report.pairs[criterion]:
            if "sys2" in (row["system"], row["opponent"]):
                # 3 annotators × 12 dialogues; expected 72% won, 8% lost (ties 10%)
                side, other = ("win", "loss") if row["system"] == "sys2" else ("loss", "win")
                assert row[side]["value"] > 0.5 and row[side]["low"] > row[other]["high"], row
        means = {s: cell["mean"]["value"] for s, cell in report.ratings[criterion].items()}
        assert max(means, key=means.get) == "sys2"
        assert report.agreement[criterion]["kappa_raters"] == 3  # the excluded annotator is not counted
    text = (tmp_path / "report" / "human_eval.md").read_text()
    assert f"| {careless} | {checks[careless][0]}/18 | yes | yes |" in text
    assert "excluded: 1 (270 answers left out, 810 used)" in text
    assert json.loads(files[1].read_text())["excluded"] == [careless]


def test_flagged_annotators_are_kept_when_asked(study: Path, tmp_path: Path) -> None:
    settings = HumanReportConfig(n_bootstrap=50, exclude_flagged=False)
    report, _ = report_study(study, _files(study, tmp_path / "ann", "csv"), settings, tmp_path / "report")
    assert [a.annotator for a in report.attention if a.flagged] == ["careless"]
    assert (report.excluded, report.answers_excluded) == ([], 0)
    assert report.agreement["empathy"]["kappa_raters"] == 4


def test_the_report_is_an_mlflow_run(study: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    report, files = report_study(study, _files(study, tmp_path / "ann", "csv"), HumanReportConfig(n_bootstrap=50),
                                 tmp_path / "report")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_report(uri, "human", study, report, files)
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["empdg.role"] == "human_evaluation" and run.info.status == "FINISHED"
    assert run.data.metrics["human/annotators_excluded"] == 1
    assert run.data.metrics["human/empathy/bt/sys2"] == pytest.approx(report.strengths["empathy"]["sys2"]["value"])
    assert run.data.params["report.exclude_flagged"] == "True"
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run_id, "human_evaluation")}
    assert artifacts == {"human_evaluation/human_eval.md", "human_evaluation/human_eval.json"}


@pytest.mark.real_data
def test_a_study_of_two_released_systems(release_outputs_dir: Path, peer_outputs_dir: Path, tmp_path: Path) -> None:
    # EmpDG's release (2,713 turns) and MoEL's own (all 5,255 turns, four systems, KEMP-like spacing differences
    # aside): the study draws from the turns both answered
    systems = {"EmpDG": str(release_outputs_dir / "pred_EmpDG.txt"),
               "MoEL": {"path": str(peer_outputs_dir / "moel_generation_result.txt"), "system": "MOE"}}  # fmt: skip
    manifest, _ = export_study(systems, HumanStudyConfig(n_dialogues=64, seed=1), tmp_path / "study")
    key = json.loads((tmp_path / "study" / "system_key.json").read_text())
    assert key["shared_examples"] == 2713
    drawn = Counter(d["emotion"] for d in manifest["dialogues"])
    shares = Counter(record.emotion for record in read_predictions(release_outputs_dir / "pred_EmpDG.txt"))
    assert len(manifest["dialogues"]) == 64 and set(drawn) == set(shares) and len(shares) == 32
    for emotion, count in shares.items():  # each emotion its share of 64, rounded by largest remainder
        assert abs(drawn[emotion] - 64 * count / 2713) < 1, emotion
    for dialogue in manifest["dialogues"]:
        assert len(set(dialogue["replies"].values())) >= 1 and dialogue["context"] and dialogue["reference"]
    pairwise = json.loads((tmp_path / "study" / "label_studio" / "pairwise_tasks.json").read_text())
    assert len(pairwise) == 64 + 7  # one pair per dialogue, ceil(0.1 × 64) checks


@pytest.mark.real_data
def test_the_simulated_study_of_three_releases_separates_the_preferred_system(
    release_outputs_dir: Path, peer_outputs_dir: Path, tmp_path: Path, capsys
) -> None:
    import importlib.util

    from tiny import REPO

    script = REPO / "experiments" / "human_eval_simulated" / "run.py"
    spec = importlib.util.spec_from_file_location("study_human_eval_simulated", script)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    assert study.main(["--shared", str(release_outputs_dir.parent.parent), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report" / "human_eval.json").read_text())
    assert report["excluded"] == ["random"]
    for criterion in ("empathy", "relevance", "fluency"):
        strengths = report["strengths"][criterion]
        others = [strengths[s]["high"] for s in ("MoEL", "KEMP")]
        assert strengths["EmpDG"]["low"] > max(others), criterion  # 3 of 4 annotators prefer it with p = 0.8
    assert "| EmpDG | 0.944 [" in capsys.readouterr().out  # docs/human_evaluation.md quotes this run


def test_an_annotator_who_only_rates_is_checked_too(tmp_path: Path) -> None:
    study = export_synthetic_study(tmp_path / "ratings_only", n_systems=3, pairwise=False)
    answers = simulate_answers(study, ANNOTATORS[-2:], seed=3)  # one careful, one careless
    files = [write_csv_answers(study, answers[name], name, "ratings", tmp_path / f"{name}.csv")
             for name in ("good2", "careless")]  # fmt: skip
    report, _ = report_study(study, files, HumanReportConfig(n_bootstrap=20), tmp_path / "report")
    checks = {a.annotator: (a.passed, a.answered, a.flagged) for a in report.attention}
    assert checks["good2"] == (9, 9, False)  # ceil(0.25 × 36) checks, each rated 1 or 2
    assert checks["careless"][1] == 9 and checks["careless"][2]  # uniform 1-5: passes 2 in 5
    assert report.excluded == ["careless"]


def test_a_rating_check_passes_at_or_below_the_studys_maximum(study: Path) -> None:
    from empdg.evaluation.human_import import Answer, read_study
    from empdg.evaluation.human_report import attention_results

    loaded = read_study(study)
    check = next(t for t in loaded.tasks.values() if t["kind"] == "rating_check")
    answers = [Answer(check["task_id"], "ann1", "relevance", 2, study, "-"),
               Answer(check["task_id"], "ann2", "relevance", 3, study, "-"),
               Answer(check["task_id"], "ann2", "empathy", 1, study, "-")]  # fmt: skip
    results = {a.annotator: (a.passed, a.answered) for a in attention_results(answers, loaded, 0.8)}
    assert results == {"ann1": (1, 1), "ann2": (0, 1)}  # only relevance is the check's criterion


def test_a_study_exported_before_the_rating_checks_still_reads(study: Path, tmp_path: Path) -> None:
    import shutil

    from empdg.evaluation.human_import import read_study

    old = tmp_path / "old"
    shutil.copytree(study, old)
    manifest = json.loads((old / "study.json").read_text())
    manifest.update(format="empdg-human-study/1")
    del manifest["rating_check_max"]
    manifest["tasks"] = [t for t in manifest["tasks"] if t["kind"] != "rating_check"]
    (old / "study.json").write_text(json.dumps(manifest))
    key = json.loads((old / "system_key.json").read_text())
    (old / "system_key.json").write_text(json.dumps({**key, "format": "empdg-human-study/1"}))
    loaded = read_study(old)
    assert loaded.rating_check_max == 2 and "rating_check" not in {t["kind"] for t in loaded.tasks.values()}
