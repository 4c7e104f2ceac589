"""Known-item sets for bench.quality, built from Debian packages.

Each builder downloads its packages with ``apt-get download`` into a cache outside the
repository, reads them, and writes ``{"id", "query", "content"}`` JSON lines. A query
is text that names or summarises one document and is removed from it (a module's
synopsis, a node's menu description, a section's heading), never a copy of what is
left in the document. Builders are deterministic: files are read in sorted order and
the sample is drawn with a fixed seed.

    uv run python -m bench.datasets.python_modules --out DIR
    uv run python -m bench.datasets.python_sections --out DIR
    uv run python -m bench.datasets.info_nodes --out DIR
    uv run python -m bench.datasets.debian_descriptions OUT.jsonl   # 6 languages

``lone_words`` derives one-word queries from any of these sets.
"""
