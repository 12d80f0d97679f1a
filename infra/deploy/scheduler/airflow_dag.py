"""Airflow DAG for the nightly catalogue job: preprocess → render → report (example deployment file).

Each task is the plain CLI, so retries are safe: every stage resumes where it stopped.
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
    render = BashOperator(
        task_id="render",
        bash_command=f"gpvton render --config /conf/render.yaml --output {JOB} --address auto",
    )
    report = BashOperator(task_id="report", bash_command=f"gpvton report --job {JOB}")
    preprocess >> render >> report
