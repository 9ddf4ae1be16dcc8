"""LightGCN: ``model`` holds the class (``recsys.LightGCN``), ``propagation`` the operator it trains through,
``_bpr`` its objective and ``_training`` its epochs. The last three import torch; ``model`` imports them only
when a fit starts (or its ``adjacency`` / ``propagate`` are called)."""
