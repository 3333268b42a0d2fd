"""The embedding worker a Python user deploys today, run by `worker-bench --embed`: the official
Python SDK (runpod 1.12.0) and sentence-transformers with the same model directory the Rust
worker loads (MODEL_DIR), on CPU, offline.

The model is loaded at import, as RunPod's examples do. The handler is a coroutine that runs
`model.encode` on a thread (so the SDK's loop keeps taking jobs and sending heartbeats), and a
concurrency_modifier gives BENCH_CONCURRENCY. Input and output as the Rust example's:
{"text": ...} -> {"embedding", "dimensions", "model"}, {"texts": [...]} -> {"embeddings", ...}.
"""

import asyncio
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import runpod  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "1"))
MODEL = SentenceTransformer(os.environ["MODEL_DIR"], device="cpu")
NAME = "sentence-transformers/all-MiniLM-L6-v2"


async def embed(job):
    request = job["input"]
    one = "text" in request
    texts = [request["text"]] if one else request["texts"]
    vectors = await asyncio.to_thread(
        MODEL.encode, texts, batch_size=32, normalize_embeddings=True
    )
    if one:
        return {"model": NAME, "dimensions": 384, "embedding": vectors[0].tolist()}
    return {"model": NAME, "dimensions": 384, "embeddings": vectors.tolist()}


runpod.serverless.start(
    {"handler": embed, "concurrency_modifier": lambda current: CONCURRENCY}
)
