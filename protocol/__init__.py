"""remixnet's sans-IO protocol layer: records, content layout, wire formats, lineage.

Nothing here does I/O, reads a clock or draws randomness; time and keys come in
as arguments. Nothing here imports from ``node``.
"""
