"""Procedural try-on catalogue: garments and model photos with exact labels (pure NumPy/Pillow).

:func:`pipelines.synthetic.catalogue.make_catalogue` writes a small, fully labelled, *paired*
catalogue in the plain-manifest layout that ``gpvton preprocess --input manifest:OUT/...`` reads,
deterministically from a seed (``gpvton demo``, the demo model's training data, tests, benchmarks).

One module per concept, in drawing order:

* :mod:`.raster` — masks of polygons / lines / ellipses and the perspective map of a quad;
* :mod:`.textures` — fabric textures (solid, stripes, checks, dots, gradients);
* :mod:`.garments` — flat product photos cut into pieces, with their mask and part labels;
* :mod:`.body` — a jittered BODY_25 skeleton and the body geometry drawn around it;
* :mod:`.dressing` — a flat garment mapped onto the body piece by piece;
* :mod:`.persons` — the model photo with its parsing, DensePose index and keypoints;
* :mod:`.catalogue` — the files, CSVs and ``meta.json`` of a whole catalogue.
"""
