"""The parts of benchmarks/report.py: table renderers per CSV, the headline, and the sections of docs/results.md."""
