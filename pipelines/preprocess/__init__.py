"""Preprocess: raw catalogues / datasets → condition shards (Parquet), run with Apache Beam."""
