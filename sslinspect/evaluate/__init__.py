"""Evaluation protocols for pretrained backbones on the project's labels (k-NN, linear probe, fine-tuning), and the
comparison table over pretraining runs."""
