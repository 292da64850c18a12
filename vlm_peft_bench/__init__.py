"""vlm-peft-bench: nanoLLaVA with any adapter, as an lmms-eval model, plus tasks, scorers and a leaderboard."""

__version__ = "0.1.0"
