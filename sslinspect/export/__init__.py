"""ONNX export: one self-contained graph (preprocessing, backbone, classifier, anomaly score) + metadata."""
