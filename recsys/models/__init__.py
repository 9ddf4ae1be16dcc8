"""The models room: graph embedding models behind one contract, and how they are measured.

=================  =========================================================================================
module             holds
=================  =========================================================================================
``graph_model``    the contract: :class:`GraphModel` (base class), :class:`GraphEmbeddings` (what a fit
                   returns), ``MODELS`` and :func:`make_model` (a model by name, its module imported only then)
``graph_filter``   ``GraphFilter``, the default model: a GF-CF/BSPM-family filter tuned on a carved split, served in
                   two stages (256-d candidate vectors, then the exact filter per request)
``rerank``         ``FilterRerank``: the exact filter's arrays and its per-request score (numpy; the client's)
``spectral``       ``Spectral``: embeddings from one randomized SVD (numpy and scipy only)
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
