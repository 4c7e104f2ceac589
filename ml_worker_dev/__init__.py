"""Tools for working on ml-worker from a source checkout, never shipped with it.

The demo, the local stack the tests, benchmarks and demo run (RabbitMQ virtual hosts,
icij-worker's task service, worker pools, an Elasticsearch emulator) and Datashare-like
project indices. The worker and its CLI (``ml_worker``) never import this package.
"""
