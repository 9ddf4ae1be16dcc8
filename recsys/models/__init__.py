"""The models room: graph embedding models behind one contract, and how they are measured.

=================  =========================================================================================
module             holds
=================  =========================================================================================
``graph_model``    the contract: :class:`GraphModel` (base class), :class:`GraphEmbeddings` (what a fit
                   returns), ``MODELS`` and :func:`make_model` (a model by name, its module imported only then)
``spectral``       ``Spectral``, the default model: embeddings from one randomized SVD (numpy and scipy only)
``lightgcn/``      ``LightGCN``: ``model`` (the class), ``propagation`` (the normalised adjacency and the layer
                   mean), ``_bpr`` (negative sampling, BPR loss), ``_training`` (the epochs and early stop)
``node2vec/``      ``Node2Vec``: ``model`` (the class), ``walks`` (numba random walks), ``skipgram`` (numba SGNS)
``metrics``        exact top-k ranking and Recall/NDCG/Precision@k, as the outside scorer computes them
``_svd``           randomized truncated SVD (spectral's fit, LightGCN's start)
``_holdout``       a validation split carved from the training interactions
=================  =========================================================================================

Importing this room imports no model: torch (LightGCN), numba and gensim (Node2Vec) load with the model
that needs them, through :func:`make_model` or ``recsys.LightGCN`` / ``recsys.Node2Vec``.
"""
