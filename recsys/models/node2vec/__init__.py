"""Node2Vec: ``model`` holds the class (``recsys.Node2Vec``), ``walks`` the numba random walker and
``skipgram`` the numba skip-gram trainer; gensim and the ``node2vec`` package are imported only by the engines
that use them."""
