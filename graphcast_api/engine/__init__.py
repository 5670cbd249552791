"""Our PyTorch implementation of GraphCast inference (loads official checkpoints)."""
