"""Few-shot defect classification and k-NN anomaly scoring on frozen, L2-normalised embeddings."""
