"""Airflow DAG for the nightly catalogue job: preprocess → render → report (example deployment file).

Each task is the plain CLI, so retries are safe: every stage resumes where it stopped.

Exit codes (README, "Jobs"): 0 success, 1 the job ran but failed, 2 configuration error.
* ``render`` fails (1) only when pairs produced no image: (error + missing) / planned above
  ``max_unrendered_fraction`` (a retry renders just the lost units).
* ``report`` is the QA gate: it fails (1) when (fail + error + missing) / planned is above
  ``max_failed_fraction``; the report is written either way. Publish only after it succeeds.
* ``gpvton status JOB`` says what a failed job did (units, error messages, last log lines).
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

JOB = "s3://catalogue/jobs/{{ ds }}"

with DAG(
    "gpvton_nightly",
    start_date=datetime(2026, 1, 1),
    schedule="30 1 * * *",
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
) as dag:
    preprocess = BashOperator(
        task_id="preprocess",
        bash_command="gpvton preprocess --config /conf/preprocess.yaml",
    )
    # /conf/render.yaml names both checkpoints: without them render refuses to start (exit 2).
    render = BashOperator(
        task_id="render",
        bash_command=f"gpvton render --config /conf/render.yaml --output {JOB} --address auto",
    )
    qa_gate = BashOperator(
        task_id="qa_gate",
        bash_command=f"gpvton report --job {JOB} || (gpvton status {JOB}; exit 1)",
        retries=0,  # a QA verdict does not change on retry
    )
    publish = BashOperator(
        task_id="publish",
        bash_command=f"echo 'publish {JOB}/renders: replace with your sync to the shop'",
    )
    preprocess >> render >> qa_gate >> publish
