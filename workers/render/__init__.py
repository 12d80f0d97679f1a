"""The render worker: one unit of pairs in, try-on images + one scores Parquet + a done marker out.

Modules, one concept each:

* :mod:`~workers.render.settings` — :class:`WorkerSettings` (plain data), the job storage, writer threads;
* :mod:`~workers.render.inputs` — the unit's shard rows read, decoded and cached per worker;
* :mod:`~workers.render.models` — the two networks from their checkpoints (or random);
* :mod:`~workers.render.encoding` — persons and garments encoded once each, cached per worker;
* :mod:`~workers.render.batches` — the pairs on the device, one batch in flight, scores;
* :mod:`~workers.render.images` — output keys, paste-back, the original frame, encoding and writes;
* :mod:`~workers.render.score_rows` — the unit's plan and its rows of the scores file;
* :mod:`~workers.render.unit` — :class:`UnitProcessor`: read → compute → write, scores and marker last;
* :mod:`~workers.render.actor` — the processor in a Ray actor, with its log under ``JOB/logs/``;
* :mod:`~workers.render.runners` — the local runner and :class:`RayPool`, one retry policy;
* :mod:`~workers.render.lru` — the bounded caches.

Every write goes through :class:`infra.storage.Storage` (atomic, retried with exponential
backoff). The importers name the module they need; this package exports nothing itself.

Why Ray core actors and not Ray Data ``map_batches``
----------------------------------------------------
The work is already partitioned by the planner into units whose pairs share garments and
persons, and each unit must produce exactly one Parquet file + marker (resumability). A fixed
pool of core actors (:class:`~workers.render.runners.RayPool`) maps onto that directly: one actor
per GPU (or a fractional CPU share), each holding the two networks and its feature caches; the
driver keeps at most ``in_flight_per_actor`` units queued per actor (backpressure: nothing is read
before an actor is about to need it, object store stays empty — actors read the shards
themselves); an actor process that dies is restarted by Ray (``max_restarts``) and its unit
re-executed (``max_task_retries``) — the constructor takes only small plain data (settings, worker
number) inlined in the actor's creation task, so a restart never depends on the object store; a
unit that still fails is reported and left without a marker, so the next run picks it up. Ray Data
would add a read stage whose blocks must go through the object store, a repartition step to spread
few large blocks, and the 2-core scheduling deadlock noted in ENVIRONMENT.md, for no gain on this
access pattern.
"""
