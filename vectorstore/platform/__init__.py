"""The platform under the store: what every package of the service stands on.

``settings`` (the one settings object, from ``EA_*`` variables), ``env`` (typed, checked environment values),
``connection`` (the one factory of Redis clients, cluster or not; Celery's broker URL and transport),
``broker`` (Celery's queues on Redis or RabbitMQ), ``embedded`` (the zero-setup redis-server), ``inputs``
(input files read on someone else's behalf: the data root, what a message may quote of a file) and ``files``
(compression told by a file's first bytes, shared by recsys's and anomaly's readers).
Other packages import these names from :mod:`vectorstore` itself.
"""
