"""Node2Vec on the user-item graph: (p, q)-biased random walks, then skip-gram with negative sampling.

Users and items are nodes of one bipartite graph (item j is node ``n_users + j``). Skip-gram with negative
sampling learns ``sigma(input[a] . output[b])`` ~ "b occurs near a in a walk", so a user is scored against
an item by the inner product of the user's *input* vector and the item's *output* (context) vector: the
returned ``user_vectors`` are input vectors, ``item_vectors`` output vectors, ``space="ip"``. Measured on
ml-100k u1 (Recall@20): input.output 0.162, input.input 0.050 by inner product and 0.008 by cosine
(popularity: 0.148).

The other client paths need the items' *input* vectors, published beside them (ml-100k u1, Recall@20,
default parameters, known users 0.201 by input.output):

* fold-in (``fold_in_vectors``): a new user's vector is the mean of their items' input vectors, scored
  against the output vectors like a known user's input vector: 0.209 (the mean of output vectors: 0.0045);
* similar items (``similar_vectors . similar_targets``): ``input[x] . output[j] + 0.75 log d_j``, skip-gram's
  estimate of ``log P(j near x)`` (its noise distribution is the unigram^0.75, and walks visit an item in
  proportion to its degree d_j). On "a user's best-rated training item -> that user's held-out items",
  Recall@20 0.157, against popularity 0.120, input.output alone 0.110, cosine of input vectors 0.081;
* user outliers (``user_outliers="history"``): the centred mean of the user's items' input vectors. Ten
  planted bots (60 random items each) rank 0-7, 12 and 22 of 953 users there; by their own input vectors
  they rank 16-96 and none is flagged. Item outliers: input vectors.

Engines:

* ``"native"`` (default): this project's numba walker (:mod:`recsys.models.node2vec.walks`), then skip-gram with
  negative sampling: by default this project's numba SGNS (:mod:`recsys.models.node2vec.skipgram`, ``trainer="numba"``:
  the same model as gensim's, about 1.8x less CPU per token), or gensim's ``Word2Vec``
  (``trainer="gensim"``) with its vocabulary built from the walk counts (no corpus scan) and the walks
  streamed from the int32 walk matrix as lists of shared token strings. gensim's ``corpus_file`` mode
  was measured too: no faster, and Recall@20 0.14 instead of 0.20 on ml-100k u1.
* ``"node2vec"``: the ``node2vec`` package on a networkx graph, with the same parameters: the reference
  implementation, fine on small graphs and slow on large ones.

The walks are a function of ``seed`` alone, generated on ``workers`` threads. The numba skip-gram trains
them in one lane, so the whole fit is bit-reproducible for any ``workers``. ``hogwild=True`` trains in
``workers`` lock-free lanes instead, as gensim and word2vec.c do: 1.4x faster on ml-1m, but the vectors
then vary from run to run, and on the user-item graph (a few thousand hot nodes that every lane updates)
it cost Recall@20: 0.2019 against 0.2060 with one lane on ml-100k u1, the same 10 walk seeds.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np

from ...data.interactions import Interactions
from ...exceptions import InvalidParameter, TrainingError
from ..graph_model import GraphEmbeddings, GraphModel, ProgressCallback, check_positive_float, check_positive_int
from .skipgram import train_skipgram
from .walks import CSRGraph, random_walks, set_threads

__all__ = ["Node2Vec"]

logger = logging.getLogger(__name__)

ENGINES = ("native", "node2vec")
#: exponent of skip-gram's noise distribution (word2vec's unigram^0.75): the item prior of similar items
NOISE_POWER = 0.75
TRAINERS = ("numba", "gensim")


class Node2Vec(GraphModel):
    """Node2Vec graph embeddings of users and items.

    Parameters (keyword): ``dim`` (64), ``walk_length`` (40, nodes per walk), ``walks_per_node`` (10),
    ``window`` (10), ``p`` (1.0, return), ``q`` (1.0, in-out), ``negative`` (5), ``epochs`` (1,
    skip-gram passes), ``sample`` (1e-3, gensim's down-sampling of frequent nodes), ``seed`` (0),
    ``workers`` (2: walker threads, and gensim's), ``hogwild`` (False: the numba skip-gram in one
    reproducible lane; True: in ``workers`` lock-free lanes), ``engine`` ("native" | "node2vec"),
    ``trainer`` ("numba" | "gensim": the native engine's skip-gram), ``space`` ("ip" | "cosine": how user.item is
    scored; "cosine" L2-normalises both).

    Raises:
        InvalidParameter: a parameter has a bad value (named in the message).
    """

    name: ClassVar[str] = "node2vec"
    defaults: ClassVar[dict[str, Any]] = {
        "dim": 64,
        "walk_length": 40,
        "walks_per_node": 10,
        "window": 10,
        "p": 1.0,
        "q": 1.0,
        "negative": 5,
        "epochs": 1,
        "sample": 1e-3,
        "seed": 0,
        "workers": 2,
        "hogwild": False,
        "engine": "native",
        "trainer": "numba",
        "space": "ip",
    }

    def validate(self, params: dict[str, Any]) -> None:
        check_positive_int(params, "dim", "walk_length", "walks_per_node", "window", "epochs", "workers")
        check_positive_int(params, "negative", "seed", minimum=0)
        check_positive_float(params, "p", "q")
        sample = params["sample"]
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 <= sample < 1:
            raise InvalidParameter(f"sample={sample!r}: must be a number in [0, 1)")
        if params["engine"] not in ENGINES:
            raise InvalidParameter(f"engine={params['engine']!r}: must be one of {', '.join(ENGINES)}")
        if params["trainer"] not in TRAINERS:
            raise InvalidParameter(f"trainer={params['trainer']!r}: must be one of {', '.join(TRAINERS)}")
        if not isinstance(params["hogwild"], bool):
            raise InvalidParameter(f"hogwild={params['hogwild']!r}: must be True or False")
        if params["space"] not in ("cosine", "ip"):
            raise InvalidParameter(f"space={params['space']!r}: must be 'cosine' or 'ip'")

    def fit(
        self,
        interactions: Interactions,
        *,
        valid: Interactions | None = None,
        progress: ProgressCallback | None = None,
    ) -> GraphEmbeddings:
        """Embed the users and items of ``interactions``; ``valid`` is not used (no early stopping).

        Edge weights (duplicates summed) bias the walks: a step follows an edge in proportion to its
        weight times the (p, q) factor. Progress: ``{"stage": "walks", "done", "total", "walks"}`` per
        batch of walks, then ``{"stage": "skipgram", "done", "total", "epoch"}`` per epoch.

        Returns:
            :class:`GraphEmbeddings`: users' input vectors, items' output (context) vectors, ``space``
            as configured (default "ip"), and the vectors of the other paths (module docstring); ``history``
            has the seconds of the walks and skip-gram stages.

        Raises:
            TrainingError: the skip-gram produced no or non-finite vectors.
        """
        if len(interactions) == 0:
            raise TrainingError("node2vec: no interactions to train on")
        started = time.perf_counter()
        if self.params["engine"] == "native":
            (vectors, context), history = self._fit_native(interactions, progress)
        else:
            (vectors, context), history = self._fit_package(interactions, progress)
        if not (np.isfinite(vectors).all() and np.isfinite(context).all()):
            raise TrainingError("node2vec: skip-gram produced non-finite vectors")
        history.append({"stage": "total", "seconds": time.perf_counter() - started})
        n_users = interactions.n_users
        item_input, item_output = vectors[n_users:], context[n_users:]
        degree = np.asarray(interactions.user_matrix().sum(axis=0), dtype=np.float64).ravel()
        prior = (NOISE_POWER * np.log(np.maximum(degree, 1e-12)))[:, None]
        ones = np.ones((interactions.n_items, 1), dtype=np.float32)
        return GraphEmbeddings(
            user_vectors=vectors[:n_users],
            item_vectors=item_output,
            space=self.params["space"],
            params=dict(self.params),
            history=history,
            fold_in_vectors=item_input,
            similar_vectors=np.hstack([item_input, ones]),
            similar_targets=np.hstack([item_output, prior.astype(np.float32)]),
            user_outliers="history",
            item_outliers="fold_in",
        )

    # -- native engine ------------------------------------------------------------------------------

    def _fit_native(self, interactions: Interactions, progress: ProgressCallback | None):
        P = self.params
        set_threads(P["workers"])
        t0 = time.perf_counter()
        graph = CSRGraph(interactions.graph(), bipartite=True)
        walks = random_walks(
            graph,
            walk_length=P["walk_length"],
            walks_per_node=P["walks_per_node"],
            p=float(P["p"]),
            q=float(P["q"]),
            seed=P["seed"],
            progress=progress,
        )
        t1 = time.perf_counter()
        history = [{"stage": "walks", "walks": len(walks), "seconds": t1 - t0}]
        logger.info("node2vec: %d walks of %d nodes in %.2fs", len(walks), walks.shape[1], t1 - t0)
        counts = np.bincount(walks[walks >= 0], minlength=graph.n_nodes)
        if P["trainer"] == "numba":
            vectors = train_skipgram(
                walks, graph.n_nodes, dim=P["dim"], window=P["window"], negative=P["negative"],
                sample=P["sample"], epochs=P["epochs"], seed=P["seed"],
                threads=P["workers"] if P["hogwild"] else 1,
                progress=progress,
            )
        else:
            vectors = gensim_skipgram(walks, counts, P, progress)
        history.append({"stage": "skipgram", "tokens": int(counts.sum()), "seconds": time.perf_counter() - t1})
        return vectors, history

    # -- reference engine ---------------------------------------------------------------------------

    def _fit_package(self, interactions: Interactions, progress: ProgressCallback | None):
        import networkx as nx
        from node2vec import Node2Vec as PackageNode2Vec

        P = self.params
        t0 = time.perf_counter()
        n_nodes = interactions.n_users + interactions.n_items
        g = nx.Graph()
        g.add_nodes_from(range(n_nodes))
        g.add_weighted_edges_from(
            zip(
                interactions.users.tolist(),
                (interactions.items.astype(np.int64) + interactions.n_users).tolist(),
                interactions.weights.tolist(),
            )
        )
        if progress:
            progress({"stage": "walks", "done": 0, "total": n_nodes * P["walks_per_node"]})
        n2v = PackageNode2Vec(
            g,
            dimensions=P["dim"],
            walk_length=P["walk_length"],
            num_walks=P["walks_per_node"],
            p=P["p"],
            q=P["q"],
            workers=P["workers"],
            seed=P["seed"],
            quiet=True,
        )
        t1 = time.perf_counter()
        if progress:
            total = len(n2v.walks)
            progress({"stage": "walks", "done": total, "total": total, "walks": total})
        model = n2v.fit(
            window=P["window"],
            min_count=1,
            negative=P["negative"],
            epochs=P["epochs"],
            sample=P["sample"],
            seed=P["seed"],
            workers=P["workers"],
        )
        vectors = np.zeros((n_nodes, P["dim"]), dtype=np.float32)
        context = np.zeros((n_nodes, P["dim"]), dtype=np.float32)
        for node in range(n_nodes):
            row = model.wv.key_to_index.get(node, model.wv.key_to_index.get(str(node)))
            if row is not None:
                vectors[node] = model.wv.vectors[row]
                context[node] = model.syn1neg[row]
        if progress:
            progress({"stage": "skipgram", "done": P["epochs"], "total": P["epochs"]})
        history = [
            {"stage": "walks", "walks": len(n2v.walks), "seconds": t1 - t0},
            {"stage": "skipgram", "seconds": time.perf_counter() - t1},
        ]
        return (vectors, context), history


def gensim_skipgram(walks: np.ndarray, counts: np.ndarray, params: dict[str, Any],
             progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Skip-gram with negative sampling (gensim) over integer walks.

    Args:
        walks: int32 ``n_walks x length`` node ids, -1 padding at the end of a row.
        counts: occurrences of each node in ``walks`` (the vocabulary).
        params: ``dim``, ``window``, ``negative``, ``sample``, ``workers``, ``seed``, ``epochs``.
        progress: called with ``{"stage": "skipgram", "done", "total", "epoch"}`` after each epoch.

    Returns:
        ``(input_vectors, output_vectors)``, each ``len(counts) x dim`` float32 (zeros for a node absent
        from the walks).
    """
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    class _Epochs(CallbackAny2Vec):
        def __init__(self) -> None:
            self.done = 0

        def on_epoch_end(self, model: Any) -> None:
            self.done += 1
            if progress is not None:
                progress({"stage": "skipgram", "done": self.done, "total": params["epochs"],
                          "epoch": self.done})

    present = np.flatnonzero(counts)
    tokens = np.array([str(i) for i in range(len(counts))], dtype=object)
    padded = bool((walks < 0).any())

    class _Walks:
        """Re-iterable walks as lists of (shared) token strings."""

        def __iter__(self):
            for row in walks:
                yield tokens[row[row >= 0] if padded else row].tolist()

    model = Word2Vec(
        vector_size=params["dim"],
        window=params["window"],
        sg=1,
        negative=params["negative"],
        sample=params["sample"],
        min_count=1,
        workers=params["workers"],
        seed=params["seed"],
        epochs=params["epochs"],
    )
    model.build_vocab_from_freq({tokens[i]: int(counts[i]) for i in present}, corpus_count=len(walks))
    model.train(
        _Walks(),
        total_words=int(counts.sum()),
        total_examples=len(walks),
        epochs=params["epochs"],
        callbacks=[_Epochs()],
    )
    vectors = np.zeros((len(counts), params["dim"]), dtype=np.float32)
    context = np.zeros_like(vectors)
    rows = np.fromiter((model.wv.key_to_index[tokens[i]] for i in present), np.int64, len(present))
    vectors[present] = model.wv.vectors[rows]
    context[present] = model.syn1neg[rows]
    return vectors, context
