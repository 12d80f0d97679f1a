"""Airflow DAG for the nightly catalogue: preprocess → render → QA gate → publish the change list.

The shards and the renders live at the same two URLs every night: both stages are incremental
(content keys), so a night does what changed since the last one — new and reshot photos are
derived, new and changed pairs rendered, withdrawn garments retired — and every task is the plain
CLI, so retries are safe: each stage resumes where it stopped.

Exit codes (README, "Jobs"): 0 success, 1 the job ran but failed, 2 configuration error.
* ``preprocess`` fails (1) when more than ``max_error_fraction`` of the persons or garments could
  not be processed, or when none is left: nothing bad reaches render.
* ``render`` fails (1) only when pairs produced no image: (error + missing) / planned above
  ``max_unrendered_fraction`` (a retry renders just the lost units).
* ``qa_gate`` (``gpvton report``) fails (1) when (fail + error + missing) of tonight's changes is
  above ``max_failed_fraction``; the report is written either way. Publish only after it passes.
* ``publish`` hands tonight's change list (``JOB/changes/RUN.parquet``: added / updated pairs with
  their image keys and scores, retired pairs to withdraw) to the shop's publisher.
* ``gpvton status JOB`` says what a failed night did (units, error messages, last log lines).
"""

from datetime import datetime, timedelta

from airflow import DAG

try:                                  # Airflow 3: the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:                   # Airflow 2
    from airflow.operators.bash import BashOperator

SHARDS = "s3://catalogue/shards"
JOB = "s3://catalogue/renders"

with DAG(
    "gpvton_nightly",
    start_date=datetime(2026, 1, 1),
    schedule="30 1 * * *",
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    preprocess = BashOperator(
        task_id="preprocess",
        bash_command=f"gpvton preprocess --config /conf/preprocess.yaml --output {SHARDS}",
    )
    # /conf/render.yaml names both checkpoints: without them render refuses to start (exit 2).
    render = BashOperator(
        task_id="render",
        bash_command=f"gpvton render --config /conf/render.yaml --shards {SHARDS} --output {JOB} --address auto",
    )
    qa_gate = BashOperator(
        task_id="qa_gate",
        bash_command=f"gpvton report --job {JOB} || (gpvton status {JOB}; exit 1)",
        retries=0,  # a QA verdict does not change on retry
    )
    publish = BashOperator(
        task_id="publish",
        bash_command=f"publish-to-shop --changes \"$(gpvton status {JOB} --change-list)\" --images {JOB}",
    )
    preprocess >> render >> qa_gate >> publish
