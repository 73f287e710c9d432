"""Reference policies that only the cloud side can run (they read the simulator's ground truth)."""

from trainer.baselines.oracle import OraclePolicy

__all__ = ["OraclePolicy"]
