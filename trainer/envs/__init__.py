"""Gymnasium environments over the virtual site; importing this package registers them.

``gymnasium.make("SiteHawk/PTZSearch-v0")`` after ``import trainer.envs``, or in one call
``gymnasium.make("trainer.envs:SiteHawk/PTZSearch-v0")``. The entry point is lazy: the env
module (and the simulator) is imported only when an env is made.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

PTZ_SEARCH_ID = "SiteHawk/PTZSearch-v0"

__all__ = ["PTZ_SEARCH_ID"]

# The env truncates itself at the end of its episode, so no TimeLimit wrapper is needed.
if PTZ_SEARCH_ID not in registry:
    register(id=PTZ_SEARCH_ID, entry_point="trainer.envs.ptz_search:PTZSearchEnv")
