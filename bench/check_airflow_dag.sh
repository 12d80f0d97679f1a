#!/usr/bin/env bash
# Import the nightly DAG with a real Airflow in a virtualenv of its own (Airflow's pins do not share
# the project's Beam/Ray environment): no import errors, and the task order preprocess → render →
# qa_gate → publish. About a minute (the install); needs the package registry.
#   bash bench/check_airflow_dag.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/gpvton-airflow-venv}
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "apache-airflow>=2.10,<3.2"; }
export AIRFLOW_HOME=$(mktemp -d)
"$VENV/bin/python" - <<'PY'
import json
from airflow.models import DagBag

bag = DagBag(dag_folder="infra/deploy/scheduler", include_examples=False)
assert not bag.import_errors, bag.import_errors
dag = bag.dags["gpvton_nightly"]   # get_dag would ask the metadata database
order = [t.task_id for t in dag.topological_sort()]
assert order == ["preprocess", "render", "qa_gate", "publish"], order
import airflow
print(json.dumps({"airflow": airflow.__version__, "dags": list(bag.dag_ids), "order": order,
                  "publish": dag.get_task("publish").bash_command}))
PY
