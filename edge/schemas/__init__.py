"""JSON Schemas of the messages the edge agent publishes, shipped as package data.

``alert.v1.json`` is the alert message of DESIGN.md's MQTT contract; load and check it with
:mod:`edge.alerts.schema`.
"""
