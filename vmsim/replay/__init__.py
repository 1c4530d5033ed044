"""Replaying real programs' memory traces through the model (vmsim replay / convert / sweep).

    readers    Valgrind lackey, Pin pinatrace, compressed inputs, the native format
    native     the columnar .npz / Parquet format and its writer (vmsim convert)
    infer      VMAs inferred from a text trace's touched pages
    run        the replay: a Machine, the inferred layout, p.access per chunk, statistics
    report     the report as text, JSON and matplotlib plots
    sweep      a grid of configurations, in local processes or on Ray

A user-facing layer: the model never imports it.
"""
