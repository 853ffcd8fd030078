"""The end of the pipeline: what a run tells its user: report.json/.md/.html, charts, the terminal display.

Takes the report dictionary that ``pipeline`` assembles from every stage; returns the files written. It may
read every stage's output; no stage imports it.
"""

from .display import RichReporter, err_console, kib, out_console, pct, size, table
from .writer import optimize_line, render_html, render_markdown, rewrite_line, summary_rows, write_reports

__all__ = ["RichReporter", "err_console", "kib", "optimize_line", "out_console", "pct", "render_html",
           "render_markdown", "rewrite_line", "size", "summary_rows", "table", "write_reports"]
