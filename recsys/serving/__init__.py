"""The serving room: recommendations from the active version, without torch.

====================  =======================================================================================
module                holds
====================  =======================================================================================
``client``            :class:`RecommendationClient`: the queries, each composed of the steps below
``recommendations``   :class:`Recommendations` (what a query answers) and the checks of ``k`` and ``fields``
``serving_model``     :class:`ServingModel`: one version loaded for serving, swapped whole on a new version
``_watcher``          :class:`VersionWatcher`: keeps the served version current (notices, polling, preloads)
``_lease``            the client's leases on the versions it holds (cleanup never deletes them under it)
``_user_rows``        a request's per-user rows: one pipelined round trip, opened, cached for outages
``_breaker``          the circuit breaker of those reads (a hung Redis costs one timeout)
``_ranking``          the ranking steps: index search, exact re-rank, precomputed lists, popularity, answer
``version_index``     :class:`VersionIndex`: a version's item index behind its backend (searches, filters,
                      fields, deltas), the seam the client, the writer and the follower talk to; its
                      in-process (hnswlib) implementation
``index_backends``    :func:`open_index`: a version's :class:`VersionIndex`, by the backend it was published with
``_milvus_index``     the Milvus implementation: a version whose items are a Milvus collection (search,
                      one-search ``recommend``, deltas written to the collection)
``_filter_grammar``   the filter expression language, parsed into a tree (a subset of Milvus')
``_filter_cache``     a filter expression evaluated on item metadata, cached per metadata state
``similarity``        similar users, and similar items by cosine (:class:`SimilarUsers`)
``precompute``        :func:`precompute_top_n`: every user's top-N written for the served version
====================  =======================================================================================

Nothing here imports torch (a test says so): a web application that only serves installs redis, hnswlib and
numpy.
"""
