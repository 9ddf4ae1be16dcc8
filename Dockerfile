FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md ./
COPY vectorstore vectorstore
COPY recsys recsys
COPY anomaly anomaly
COPY workers workers
# torch is pinned in constraints.txt; the CPU wheel index keeps the image free of CUDA.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt ".[train]" flower
# The services run as nobody, whose home is not writable: numba caches the compiled kernels (Node2Vec's walker,
# the skip-gram) and matplotlib its font list in folders of their own, and EA_DATA_DIR is the /data volume.
# /shared is where docker-compose.yml mounts the training inputs (read-only).
RUN mkdir -p /var/cache/ea/numba /var/cache/ea/matplotlib /data /shared \
    && chown -R nobody:nogroup /var/cache/ea /data
ENV NUMBA_CACHE_DIR=/var/cache/ea/numba \
    MPLCONFIGDIR=/var/cache/ea/matplotlib \
    HOME=/var/cache/ea \
    EA_DATA_DIR=/data
VOLUME ["/data"]
USER nobody
