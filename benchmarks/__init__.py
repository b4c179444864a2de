"""lcmd's benchmarks: `python -m benchmarks [--quick] [--json PATH] [--only NAME ...]`.

Each module has a `run(quick, device)` that prints a markdown table and returns `Record`s
(`benchmarks.common`); `__main__` runs them in turn and writes the records as JSON.
"""
