"""The human-evaluation pipeline end to end on released outputs, answered by simulated annotators.

EmpDG's release, MoEL (``MOE``) and KEMP on the turns all three answer: a blind study of ``--dialogues``
dialogues (every pair of systems and every reply rated, attention checks mixed in), answered as CSVs by three
simulated annotators who prefer EmpDG (p = 0.8, ties 0.1, ratings one point higher) and one answering at
random, then ``empdg-human-report``'s statistics. The figures describe the simulator, not the systems: the
point is what a report of that size looks like (how wide its intervals are) and that it finds a known
preference and the careless annotator.

    .venv/bin/python experiments/human_eval_simulated/run.py [--shared ../shared] [--out DIR] [--dialogues 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from study_common import REPO  # noqa: E402

from empdg.config.human_eval_schema import HumanReportConfig, HumanStudyConfig  # noqa: E402
from empdg.evaluation.human_export import export_study  # noqa: E402
from empdg.evaluation.human_report import report_study  # noqa: E402
from empdg.evaluation.human_simulation import SimulatedAnnotator, simulate_answers, write_csv_answers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "human_eval_simulated")
    parser.add_argument("--dialogues", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="the study's draw and the annotators' answers")
    args = parser.parse_args(argv)
    data = args.shared / "data"
    systems = {
        "EmpDG": str(data / "empdg-release-outputs" / "pred_EmpDG.txt"),
        "MoEL": {"path": str(data / "peer-release-outputs" / "moel_generation_result.txt"), "system": "MOE"},
        "KEMP": str(data / "peer-release-outputs" / "kemp_KEMP.txt"),
    }
    study = args.out / "study"
    export_study(systems, HumanStudyConfig(n_dialogues=args.dialogues, seed=args.seed), study)
    annotators = [SimulatedAnnotator(f"prefers_empdg_{i}", prefers="EmpDG") for i in range(1, 4)]
    annotators.append(SimulatedAnnotator("random", random=True))
    answers = simulate_answers(study, annotators, seed=args.seed)
    folder = args.out / "answers"
    folder.mkdir(parents=True, exist_ok=True)
    files = [write_csv_answers(study, answers[who.name], who.name, kind, folder / f"{who.name}-{kind}.csv")
             for who in annotators for kind in ("pairwise", "ratings")]  # fmt: skip
    report, written = report_study(study, files, HumanReportConfig(), args.out / "report")
    print(report.markdown())
    print("written:", *written, sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
