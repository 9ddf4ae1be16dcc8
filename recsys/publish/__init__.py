"""The publish room: a trained model written as a version of the registry, and its parts read back.

==============  ============================================================================================
module          holds
==============  ============================================================================================
``embeddings``  :func:`publish_embeddings`: what a version of a graph model holds (its parts, its ``meta``)
                and the one function that writes it, whichever its index backend
``_indexing``   the item indexes of a version, each tuned to serve its path at ANN recall >= 0.99
``wire``        the bytes of the per-user rows (vector, seen items) and precomputed top-N lists: one owner,
                read by the serving client, the precompute and the catalogue writer
``entities``    :func:`entity_vectors`: a version's user or item vectors as its model says to compare them
==============  ============================================================================================
"""
