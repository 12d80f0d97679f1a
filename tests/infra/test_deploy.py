"""The scheduler examples gate publishing on the report (the QA gate), not on render."""

from __future__ import annotations

import ast
from pathlib import Path

SCHED = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "scheduler"


def test_airflow_dag_uses_report_as_the_qa_gate():
    tree = ast.parse((SCHED / "airflow_dag.py").read_text())
    tasks = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            kw = {k.arg: k.value for k in node.value.keywords}
            if "bash_command" in kw:
                tasks[node.targets[0].id] = ast.unparse(kw["bash_command"])
    assert "gpvton report --job" in tasks["qa_gate"] and "gpvton render" in tasks["render"]
    chain = [ast.unparse(n.value) for n in tree.body[-1].body if isinstance(n, ast.Expr)]
    assert "preprocess >> render >> qa_gate >> publish" in chain
    # the nightly catalogue: the same shards and job every night (incremental), the change list published
    assert "{{ ds }}" not in (SCHED / "airflow_dag.py").read_text()
    assert "--change-list" in tasks["publish"]


def test_cron_publishes_nothing_before_the_report():
    line = [x for x in (SCHED / "gpvton-nightly.cron").read_text().splitlines() if x and not x.startswith("#")][0]
    assert line.index("gpvton render") < line.index("&& .venv/bin/gpvton report") < line.index("|| .venv/bin/gpvton status")
