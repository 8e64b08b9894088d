"""Detection quality on public benchmarks: ``gru-edge evaluate skab|nab PATH``.

- ``skab_scoring`` / ``nab_scoring``: the benchmarks' scoring rules, pure numpy (unit-tested by hand).
- ``datasets``: reading each corpus from its folder (``../shared/datasets/...`` or a path you pass).
- ``series_run``: one series end to end (normal-only GRU -> fp32 / int8 bundles -> scores via edge_runtime).
- ``skab`` / ``nab``: the protocols (which rows train, which are scored, how results pool).
- ``leaderboards``: the published tables, with our rows placed inside.
- ``report``: PNG per series and a markdown page (matplotlib, the optional ``plots`` extra).
"""
