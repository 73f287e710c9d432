"""Cloud side: the PTZ search environment, baselines, evaluation and (later) training."""
