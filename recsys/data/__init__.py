"""The data room: what goes into a model.

==================  ===========================================================================================
module              holds
==================  ===========================================================================================
``interactions``    :class:`Interactions`: user-item interactions read from a DataFrame, CSV, Parquet or the
                    MovieLens and Gowalla formats, ids mapped to dense ints, validated once
``_ingest``         the readers behind :meth:`Interactions.read` and the row-by-row validation
``_files``          a file as bytes: compression told by its first bytes, the text encoding, short excerpts
``item_table``      item metadata tables (``item,title,...``): read, checked, aligned to a model's items
``ids``             the user and item ids a request or a delta names, checked once
``synthetic``       a synthetic interaction log (taste communities, popularity skew) for demos and tests
==================  ===========================================================================================

Import from the modules (``from recsys.data.interactions import Interactions``); outside :mod:`recsys`, from
``recsys`` itself.
"""
