"""Shared model plumbing below the SSL methods and the training loop: backbones, checkpoints, runtime set-up
(device, seeding, threads) and embedding images with a frozen backbone. Nothing here imports ``methods``,
``train`` or the inspection head."""
