"""Training building blocks: losses, metrics and learning-rate schedules (plain PyTorch)."""
