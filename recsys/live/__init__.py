"""The live room: deltas on the active version, between two trainings.

Between two trainings a catalogue changes: items are added, changed or sold out, users act, fields change.
A :class:`~recsys.live.writer.CatalogueWriter` records each change as one entry of the version's delta log;
every client applies it within about a second (the writer's notice on the model's channel, the same path as
version swaps), and a client started later replays the log when it loads the version. The next full training
reads the log: its users' interactions are added to the training input and its deleted items left out, so the
new version, which starts with an empty log, learns what the deltas said; deltas written while it trained are
carried over to it.

====================  =======================================================================================
module                holds
====================  =======================================================================================
``delta_log``         the log's format, its one owner: keys, entries and their signatures, rewritten user
                      rows, the append script (:class:`LogAppender`), :func:`read_log`
``writer``            :class:`CatalogueWriter`: the four operations, each checked, then appended
``_target_version``   the version a writer writes to: its catalogue, keys and seals, users' current rows
``_fold_in``          what an item upsert or a user update writes, folded in from the version's vectors
``_checks``           the checks a delta's input passes before anything is written
``_milvus_deltas``    deletions and field updates written to a Milvus-backed version's collection
``catalogue``         :class:`Catalogue`: a version's items as its log leaves them (writer and clients alike)
``follower``          :class:`DeltaFollower`: a serving client's side of the log, kept applied
``_apply``            a batch of deltas moved into a served model's arrays and indexes
``recorded``          what a log recorded, for the next training
``carry``             :func:`carry_over`: deltas written while a version trained, carried to it
====================  =======================================================================================
"""
