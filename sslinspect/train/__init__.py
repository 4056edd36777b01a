"""The training loop, checkpoints and runtime set-up (device, seeding, threads)."""
