"""The KPI report: one self-contained HTML page of the KPI tables (``kpi_report``).

:mod:`.formatting` writes numbers for people, :mod:`.series` computes the time series and periods,
:mod:`.charts` draws one Plotly figure per section, :mod:`.page` assembles the page and
:mod:`.trend` draws the small SVG trend the KPI assets show in the Dagster UI; all pure functions
of frames. :mod:`.files` writes the page under the data root.
"""
