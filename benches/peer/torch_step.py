"""PyTorch eager peer of skillit's training step (benches/train_step.rs), for the speed comparison.

The same model as src/model.rs (token + learned position embeddings, pre-norm blocks with causal
multi-head attention through scaled_dot_product_attention and a GELU MLP, final LayerNorm, linear
head, GPT-2 initialisation), the same batch of 32, loss (preset's), global-norm clipping at 1.0 and
AdamW with weight decay 0.01 on the matrices and none on biases and LayerNorm. Prints one JSON line
per measurement: ms per training step and per evaluation pass (the preset's validation sets: 100
sequences per skill, one batched forward of the prompts).

    python3 torch_step.py --preset laptop --threads 1

benches/peer/compare.sh installs torch into a virtual environment and runs this beside the Rust
benchmark; nothing in the test suite needs Python.
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The presets of src/config.rs, LEGO: (k, d_model, n_layers, n_heads, d_ff, context, loss).
PRESETS = {
    "laptop": dict(k=3, d_model=64, n_layers=2, n_heads=4, d_ff=256, context=32, loss="answer"),
    "paper": dict(k=5, d_model=128, n_layers=2, n_heads=4, d_ff=512, context=64, loss="full"),
}
VOCAB = 36  # the LEGO vocabulary


class Block(nn.Module):
    def __init__(self, d, heads, d_ff, n_layers):
        super().__init__()
        self.heads = heads
        self.ln_attn = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln_mlp = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d_ff)
        self.fc_out = nn.Linear(d_ff, d)
        for lin, std in [(self.qkv, 0.02), (self.proj, 0.02 / math.sqrt(2 * n_layers)),
                         (self.fc, 0.02), (self.fc_out, 0.02 / math.sqrt(2 * n_layers))]:
            nn.init.normal_(lin.weight, std=std)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(d, dim=2)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(ctx.transpose(1, 2).reshape(b, s, d))
        return x + self.fc_out(F.gelu(self.fc(self.ln_mlp(x))))


class Transformer(nn.Module):
    def __init__(self, p):
        super().__init__()
        d = p["d_model"]
        self.token = nn.Embedding(VOCAB, d)
        self.position = nn.Embedding(p["context"], d)
        self.blocks = nn.ModuleList(
            Block(d, p["n_heads"], p["d_ff"], p["n_layers"]) for _ in range(p["n_layers"]))
        self.ln_final = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB)
        for e in (self.token, self.position):
            nn.init.normal_(e.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens):
        pos = torch.arange(tokens.shape[1])
        x = self.token(tokens) + self.position(pos)[None]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_final(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(PRESETS), default="laptop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--evals", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = PRESETS[args.preset]
    seq = 5 * p["k"] + 6  # LEGO sequence length; the answer is the last token
    answer = seq - 1
    model = Transformer(p)
    decay = [w for n, w in model.named_parameters() if w.dim() >= 2]
    no_decay = [w for n, w in model.named_parameters() if w.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, eps=1e-8)
    batch = torch.randint(0, VOCAB, (32, seq))

    def step():
        if p["loss"] == "full":
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        else:
            logits = model(batch[:, :answer])[:, -1]
            loss = F.cross_entropy(logits, batch[:, answer])
        value = loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return value

    def timed(fn, n, warm):
        for _ in range(warm):
            fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
        return statistics.median(times)

    val = torch.randint(0, VOCAB, (100 * p["k"], seq))

    def evaluate():
        with torch.no_grad():
            lp = F.log_softmax(model(val[:, :answer])[:, -1], dim=-1)
            return (lp.gather(1, val[:, answer:]).mean().item(),
                    (lp.argmax(1) == val[:, answer]).float().mean().item())

    step_ms = timed(step, args.steps, 20)
    eval_ms = timed(evaluate, args.evals, 3)
    print(json.dumps(dict(peer="pytorch-eager", torch=torch.__version__, preset=args.preset,
                          threads=args.threads, step_ms=round(step_ms, 3),
                          eval_ms=round(eval_ms, 3))))


if __name__ == "__main__":
    main()
