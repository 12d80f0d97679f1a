"""The QA report of a render job: ``gpvton report --job URL`` (see :mod:`pipelines.report.job`)."""
