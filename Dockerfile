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
USER nobody
