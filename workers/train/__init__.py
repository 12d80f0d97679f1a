"""Ray Train jobs' worker side (``gpvton train``): :mod:`.per_worker` is what each worker runs,
:mod:`.loop` the one loop every stage shares, :mod:`.tryon_stages` and :mod:`.parser_stage` what
each stage trains, :mod:`.data` the shards' examples, :mod:`.run_files` checkpoints and logs,
:mod:`.plots` the loss curve, :mod:`.onnx_export` the parser's ONNX file."""
