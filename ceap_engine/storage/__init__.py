"""Storage: the rules every backend of the storage ports applies, and the in-memory backends.

- :mod:`.objects`: object-key rules and JSON helpers over an ObjectStore.
- :mod:`.candidates`: what a CandidateStore accepts.
- :mod:`.documents`: a stored candidate's JSON text, handed back unparsed until read.
- :mod:`.memory`: ``MemoryObjectStore`` and ``MemoryCandidateStore``, the defaults of the test kit.

The embedded (files, SQLite) and AWS backends live in ``adapters/local`` and ``adapters/aws``.
"""
