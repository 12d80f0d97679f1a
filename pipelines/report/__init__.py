"""The QA report of a render job: ``gpvton report --job URL`` (see :mod:`pipelines.report.job`).

``job`` (config, CLI, the steps in order) reads its :mod:`.scope`, sorts it worst first
(:mod:`.ordering`), judges it (:mod:`.gate`), makes :mod:`.thumbnails`, writes the :mod:`.gallery`
pages, :mod:`.statistics` histograms and :mod:`.tables` (CSV) through the :mod:`.writer` (only what
changed), then ``summary.json`` (:mod:`.summary`) and ``index.html`` (:mod:`.index_page`).
"""
