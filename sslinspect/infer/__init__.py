"""Line-side inference with ONNX Runtime, numpy and OpenCV only: this package never imports torch."""
