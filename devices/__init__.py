"""Device profiles shipped with gru-edge: one ``<name>.toml`` per target gateway.

This folder is package data (read through ``importlib.resources``) and an import root; the schema
and loader live in ``gru_edge.edge_runtime.device_profile``.
"""
