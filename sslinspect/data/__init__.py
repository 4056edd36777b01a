"""Image data: folder scanning into the project index, the decoded uint8 cache, and batched views."""
