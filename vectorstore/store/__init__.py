"""The store: model versions in Redis and the indexes that serve them.

``registry/`` (:class:`~vectorstore.ModelRegistry`: versioned, signed publication, reading, activation and
cleanup, leases, per-row signatures, the Redis keys), ``index/`` (:class:`~vectorstore.ItemIndex` on hnswlib,
filtered search, measured recall) and ``milvus`` (a version's items in a Milvus collection). Other packages
import these names from :mod:`vectorstore` itself.
"""
