"""The one training loop, its health metrics and embedding snapshots, and pretraining runs (checkpoints and
runtime set-up live in :mod:`sslinspect.model`)."""
