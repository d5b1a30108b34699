"""Builds the tiny GPT-Neo fixture that tests/gpt_neo.rs checks skillit against (issue 11).

Nothing is downloaded: the tokenizer is a byte-level BPE (GPT-2's scheme, as GPT-Neo uses) trained
here on the tasks' own text, and the model is a random GPT-Neo of two layers (one global, one local
attention layer with a window shorter than the sequences, so a wrong window shows), small width.
Every weight is perturbed away from its default (LayerNorm gammas away from 1, betas and biases away
from 0), so a parameter loaded into the wrong place changes the logits.

Run by hand, from the repository root, with pip's torch, transformers and tokenizers:

    python3 -m venv /tmp/neo && /tmp/neo/bin/pip install torch transformers tokenizers safetensors
    cargo run -- generate --task lego --n 300 > /tmp/corpus.jsonl
    cargo run -- generate --task addition --n 300 >> /tmp/corpus.jsonl
    /tmp/neo/bin/python tests/data/make_gpt_neo_fixture.py --corpus /tmp/corpus.jsonl

It writes tests/data/gpt_neo_tiny/: config.json, model.safetensors, pytorch_model.bin (the same
weights in PyTorch's format), tokenizer.json, and the references: reference.json (the input texts,
their token ids, the versions that made them) and reference.safetensors (`logits_{i}`: the logits
[seq, vocab] of input i, float32).
"""

import argparse
import json
import os

import safetensors.torch
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_neo_tiny")
EOT = "<|endoftext|>"


def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def perturb(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True, help="JSONL from `skillit generate`")
    args = parser.parse_args()
    with open(args.corpus) as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]

    os.makedirs(OUT, exist_ok=True)
    tok = train_tokenizer(texts)
    tok.save(os.path.join(OUT, "tokenizer.json"))

    torch.manual_seed(0)
    config = transformers.GPTNeoConfig(
        vocab_size=tok.get_vocab_size(),
        max_position_embeddings=64,
        hidden_size=32,
        num_layers=2,
        attention_types=[[["global", "local"], 1]],
        num_heads=4,
        intermediate_size=None,
        window_size=7,
        activation_function="gelu_new",
        resid_dropout=0.0,
        embed_dropout=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.2,
        bos_token_id=tok.token_to_id(EOT),
        eos_token_id=tok.token_to_id(EOT),
    )
    model = transformers.GPTNeoForCausalLM(config).eval()
    perturb(model, torch.Generator().manual_seed(1))
    model.save_pretrained(OUT, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(OUT, extra)
        if os.path.exists(path):
            os.remove(path)
    torch.save(model.state_dict(), os.path.join(OUT, "pytorch_model.bin"))

    # Two LEGO texts and one addition text, plus one with characters the tasks never use.
    lego = [t for t in texts if t.startswith("Input:") and " val " in t]
    addition = [t for t in texts if " + " in t]
    inputs = [lego[0], lego[1], addition[0], "Output: zz = val 1 , Ünïcode + 42"]
    references = {}
    records = []
    for i, text in enumerate(inputs):
        ids = tok.encode(text).ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].to(torch.float32).contiguous()
        references[f"logits_{i}"] = logits
        records.append({"text": text, "ids": ids})
    safetensors.torch.save_file(references, os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(
            {
                "made_by": "tests/data/make_gpt_neo_fixture.py",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__,
                "inputs": records,
            },
            f,
            indent=1,
        )
        f.write("\n")
    print(f"wrote {OUT}: vocab {tok.get_vocab_size()}, {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
