"""Texts/s of all-MiniLM-L6-v2 in one model call, PyTorch against ONNX Runtime, same texts.

Measures the engine question of issue 13 (candle or `ort`?) without building the Rust `ort`
crate: `ort` calls the same ONNX Runtime library this script loads from the PyPI wheel, so the
per-call time is the engine's. candle's figure for the same texts comes from
`cargo run --release -p worker-bench -- --embed` ("texts/s at 1 / 8 / 32 texts per job").

    # export once, with the benchmark's torch venv (target/venvs/sentence-transformers)
    python ort_probe.py export MODEL_DIR OUT.onnx
    # measure, in a venv with onnxruntime, tokenizers and numpy (and torch for its row)
    python ort_probe.py measure MODEL_DIR OUT.onnx

The texts are the benchmark's: `text(i)` of worker-bench/src/embed.rs, ported bit for bit.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = [
    "worker", "model", "queue", "vector", "cat", "river", "quickly", "under", "bright",
    "server", "sentence", "rust", "python", "cloud", "small", "green", "jumps", "over",
    "night", "token", "batch", "reads", "writes", "stone",
]
MASK = (1 << 64) - 1


def text(i):
    state = ((i * 0x9E3779B97F4A7C15) & MASK) | 1

    def step():
        nonlocal state
        state ^= (state << 13) & MASK
        state ^= state >> 7
        state ^= (state << 17) & MASK
        return state

    n = 8 + step() % 13
    return " ".join(WORDS[step() % len(WORDS)] for _ in range(n))


def export(model_dir, out):
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        # keyword arguments: BertModel.forward's positional order changes between releases
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            Encoder(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            out,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                name: {0: "batch", 1: "seq"}
                for name in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]
            },
            opset_version=17,
            dynamo=False,
        )
    print(f"exported {out} ({os.path.getsize(out) / 1e6:.1f} MB)")


def measure(model_dir, onnx_path):
    rows = []
    try:
        import onnxruntime  # noqa: F401
        rows += measure_ort(model_dir, onnx_path)
    except ImportError:
        print("no onnxruntime in this venv: its rows are skipped")
    try:
        import torch  # noqa: F401
        rows += measure_torch(model_dir)
    except ImportError:
        print("no torch in this venv: its rows are skipped")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    print("| engine | texts/s at 1 / 8 / 32 texts per call |\n|---|---|")
    for name, r in rows:
        print(f"| {name} | {r[0]:.1f} / {r[1]:.1f} / {r[2]:.1f} |")


def measure_ort(model_dir, onnx_path):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()

    def batch(k, offset):
        enc = tok.encode_batch([text(offset + j) for j in range(k)])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask

    def pool(hidden, mask):
        m = mask[..., None].astype(np.float32)
        v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def rate(call, k, seconds=8.0):
        # warm up, then as many calls as fit in `seconds`, each on fresh texts
        call(*batch(k, 0))
        done, start, offset = 0, time.perf_counter(), 1000
        while time.perf_counter() - start < seconds:
            call(*batch(k, offset))
            done += k
            offset += k
        return done / (time.perf_counter() - start)

    # The exported graph must give the committed reference vectors before its speed counts.
    ref = json.load(open(os.path.join(HERE, "..", "..", "examples", "embed", "reference", "vectors.json")))
    check = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    worst = 1.0
    for t, want in zip(ref["texts"], ref["vectors"]):
        enc = tok.encode_batch([t])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        got = pool(check.run(None, {
            "input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
        })[0], mask)[0]
        want = np.array(want, dtype=np.float32)
        worst = min(worst, float(got @ want / np.linalg.norm(want)))
    print(f"onnxruntime against the reference vectors: lowest cosine {worst:.6f} of {len(ref['texts'])} texts")

    rows = []
    for threads in (1, 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])

        def run(ids, mask, sess=sess):
            out = sess.run(None, {
                "input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
            })[0]
            return pool(out, mask)

        rows.append((f"onnxruntime {ort.__version__}, {threads} thread(s)",
                     [rate(run, k) for k in (1, 8, 32)]))
    return rows


def measure_torch(model_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        st = SentenceTransformer(model_dir, device="cpu")

        def rate_st(k, seconds=8.0):
            st.encode([text(j) for j in range(k)], batch_size=k)
            done, start, offset = 0, time.perf_counter(), 1000
            while time.perf_counter() - start < seconds:
                st.encode([text(offset + j) for j in range(k)], batch_size=k)
                done += k
                offset += k
            return done / (time.perf_counter() - start)

        rows.append((f"sentence-transformers (torch {torch.__version__}), {threads} thread(s)",
                     [rate_st(k) for k in (1, 8, 32)]))
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("export", "measure"):
        sys.exit(__doc__)
    (export if sys.argv[1] == "export" else measure)(sys.argv[2], sys.argv[3])
