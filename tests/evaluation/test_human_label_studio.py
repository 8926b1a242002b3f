"""The exported study against the real Label Studio, not a guess at its format.

Label Studio (1.23.2, with label-studio-sdk 2.1.2) lives in a virtual environment of its own (its pins would
downgrade this project's numpy): ``$EMPDG_LABEL_STUDIO_PYTHON``, else ``.venv-labelstudio/bin/python`` in the
checkout (``.ci/run`` creates it). Without it these tests are skipped.

- always (seconds): the SDK's own schema (``LabelInterface``) accepts the labelling configs, every exported
  task, and every annotation in the form the report reads, and rejects a wrong one;
- with ``EMPDG_LABEL_STUDIO_SERVER=1``: a real server on 127.0.0.1 (2-3 minutes to start on 2 CPU cores,
  which is why it is opt-in): projects with the exported configs, the tasks imported, annotations made through
  its API, its JSON export read by the report.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from human_eval_helpers import export_synthetic_study

from empdg.config.human_eval_schema import HumanReportConfig
from empdg.evaluation.human_import import read_annotations, read_study
from empdg.evaluation.human_report import build_report
from empdg.evaluation.human_simulation import SimulatedAnnotator, simulate_answers, write_label_studio_export

REPO = Path(__file__).resolve().parents[2]

SDK_CHECK = r"""
import json, sys
from label_studio_sdk.label_interface import LabelInterface
study, exports = sys.argv[1], sys.argv[2]
out = {}
for kind in ("pairwise", "ratings"):
    li = LabelInterface(open(f"{study}/label_studio/{kind}_config.xml", encoding="utf-8").read())
    li.validate()  # raises on a config the schema refuses
    tasks = json.load(open(f"{study}/label_studio/{kind}_tasks.json", encoding="utf-8"))
    exported = json.load(open(f"{exports}/{kind}.json", encoding="utf-8"))
    bad = {"from_name": "empathy", "to_name": "dialogue" if kind == "pairwise" else "reply",
           "type": "choices" if kind == "pairwise" else "rating",
           "value": {"choices": ["C"]} if kind == "pairwise" else {"rating": 7}}
    out[kind] = {
        "tasks": [li.validate_task(task) for task in tasks],
        "annotation_errors": [li._validate_object_logic(a) for t in exported for a in t["annotations"]],
        "bad_annotation": li.validate_annotation({"result": [bad]}),
        "task_without_data": li.validate_task({"data": {"task_id": "x"}}),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ls_python() -> Path:
    python = Path(os.environ.get("EMPDG_LABEL_STUDIO_PYTHON", REPO / ".venv-labelstudio" / "bin" / "python"))
    if not python.exists():
        message = f"no Label Studio environment at {python} (.ci/run creates it; or set EMPDG_LABEL_STUDIO_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    probe = subprocess.run([str(python), "-c", "import label_studio_sdk"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{python} lacks label-studio-sdk: {probe.stderr[-300:]}")
    return python


def test_exported_configs_tasks_and_annotations_pass_the_sdk_schema(tmp_path: Path, ls_python: Path) -> None:
    study = export_synthetic_study(tmp_path / "study", n_systems=3)
    answers = simulate_answers(study, [SimulatedAnnotator("a", prefers="sys0"), SimulatedAnnotator("b", random=True)])
    (tmp_path / "exports").mkdir()
    for kind in ("pairwise", "ratings"):
        write_label_studio_export(study, answers, kind, tmp_path / "exports" / f"{kind}.json")
    done = subprocess.run([str(ls_python), "-c", SDK_CHECK, str(study), str(tmp_path / "exports")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    checked = json.loads(done.stdout.strip().splitlines()[-1])
    for kind, result in checked.items():
        assert result["tasks"] and all(result["tasks"]), kind
        assert result["annotation_errors"] and not any(result["annotation_errors"]), result["annotation_errors"][:3]
        assert result["bad_annotation"] is False and result["task_without_data"] is False, kind  # the check can fail


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: object = None) -> bytes:
        request = urllib.request.Request(
            self.base + path, data=None if body is None else json.dumps(body).encode(), method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()


@pytest.fixture(scope="module")
def label_studio(ls_python: Path, tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("EMPDG_LABEL_STUDIO_SERVER") != "1":
        pytest.skip("a real Label Studio server takes minutes to start: EMPDG_LABEL_STUDIO_SERVER=1 runs it")
    executable = ls_python.parent / "label-studio"
    if not executable.exists():
        pytest.skip(f"{executable} missing (pip install label-studio==1.23.2 in that environment)")
    data, port, token = tmp_path_factory.mktemp("label-studio"), _free_port(), "empdg0test0token0" + "0" * 23
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "annotator@example.com", "LABEL_STUDIO_PASSWORD": "empdg-test-1",
           "LABEL_STUDIO_USER_TOKEN": token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_BASE_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}  # fmt: skip
    command = [str(executable), "start", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--data-dir",
               str(data)]  # fmt: skip
    log = (data / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 420
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Label Studio did not start:\n" + (data / "server.log").read_text()[-3000:])
                time.sleep(2)
        yield _Api(base, token)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


CHOICES = {"A": "A", "B": "B", "tie": "Tie"}


def test_label_studio_server_round_trip(tmp_path: Path, label_studio: _Api) -> None:
    study = export_synthetic_study(tmp_path / "study", n_systems=2)
    answers = simulate_answers(study, [SimulatedAnnotator("a", prefers="sys1", p_prefer=1.0, p_tie=0.0)])["a"]
    exports = []
    for kind in ("pairwise", "ratings"):
        config = (study / "label_studio" / f"{kind}_config.xml").read_text(encoding="utf-8")
        project = json.loads(label_studio("POST", "/api/projects", {"title": f"empdg {kind}", "label_config": config}))
        tasks = json.loads((study / "label_studio" / f"{kind}_tasks.json").read_text(encoding="utf-8"))
        imported = json.loads(label_studio("POST", f"/api/projects/{project['id']}/import", tasks))
        assert imported["task_count"] == len(tasks)
        listed = json.loads(label_studio("GET", f"/api/tasks?project={project['id']}&page_size=1000"))
        for task in listed["tasks"] if isinstance(listed, dict) else listed:
            given = answers[task["data"]["task_id"]]
            result = [
                {"from_name": c, "to_name": "dialogue", "type": "choices", "value": {"choices": [CHOICES[str(v)]]}}
                if kind == "pairwise" else
                {"from_name": c, "to_name": "reply", "type": "rating", "value": {"rating": v}}
                for c, v in given.items()
            ]  # fmt: skip
            label_studio("POST", f"/api/tasks/{task['id']}/annotations", {"result": result})
        exports.append(tmp_path / f"{kind}_export.json")
        exports[-1].write_bytes(label_studio("GET", f"/api/projects/{project['id']}/export?exportType=JSON"))
    loaded = read_study(study)
    report = build_report(read_annotations(exports, loaded), loaded, HumanReportConfig(n_bootstrap=50))
    strengths = {s: e["value"] for s, e in report.strengths["empathy"].items()}
    assert strengths["sys1"] > strengths["sys0"]
    assert report.ratings["empathy"]["sys1"]["mean"]["value"] > report.ratings["empathy"]["sys0"]["mean"]["value"]
    assert [a.annotator for a in report.attention] == ["1"] and not report.excluded  # Label Studio's user id
