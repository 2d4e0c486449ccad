"""Search stage: Ray Tune + Optuna + trial schedulers over an experiment space."""
