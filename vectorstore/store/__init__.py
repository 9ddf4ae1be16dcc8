"""The store: model versions in Redis and the indexes that serve them.

``registry/`` (:class:`~vectorstore.ModelRegistry`: versioned, signed publication, reading, activation and
cleanup, leases, per-row signatures, the Redis keys), ``index/`` (:class:`~vectorstore.ItemIndex` on hnswlib,
filtered search, measured recall, and ``backend``: :class:`~vectorstore.IndexBackend`, where a version's index
lives), ``milvus`` (the Milvus backend: a version's items in a Milvus collection) and ``backends`` (the
backends by name, and a version's). Other packages import these names from :mod:`vectorstore` itself.
"""
