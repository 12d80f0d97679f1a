"""Set-level metrics of a render job: ``gpvton eval --job URL`` (see :mod:`pipelines.evaluate.job`).

``job`` (config, CLI, the steps in order) reads its :mod:`.inputs` (the catalogue's rows, shard
photos, renders and label maps) and the user's metric :mod:`.weights` (through ``infra.models``).
"""
