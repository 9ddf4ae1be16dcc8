"""The model registry: immutable, versioned models in Redis (see :mod:`.registry`)."""
