"""Perception on the device: detection types and (later) inference backends."""
