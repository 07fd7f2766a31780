"""Pseudo-labels: vote rules on arrays (``vote``), tri-view fusion of label files (``fuse``) and
ingestion of pseudo-label folders into each view's preprocessed space (``ingest``, ``ingest_case``)."""
