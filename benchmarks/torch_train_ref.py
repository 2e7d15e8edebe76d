"""torch_train_ref.py: the same GPT-2 training step in PyTorch, for a side-by-side comparison.

Run with Debian's /usr/bin/python3 (python3-torch). Builds nanoGPT's GPT-2 (pre-norm, tied
embeddings, tanh GELU, AdamW betas 0.9/0.95, weight decay 0.1 on matrices, clipping 1.0) at the
configs bench_train uses, times full optimizer steps on one fixed random batch after a warm-up and
prints one JSON line per config with the median tokens/s, like bench_train does.

    /usr/bin/python3 benchmarks/torch_train_ref.py [--config small|124m|all] [--steps N]
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.nh = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.nh)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, maxT, L, NH, C):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(maxT, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for n, p in self.named_parameters():  # GPT-2 initialisation
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def run(name, L, NH, C, V, B, T, steps):
    torch.manual_seed(1337)
    model = GPT(V, T, L, NH, C)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(42)
    data = torch.randint(0, V, (B * T + 1,), generator=g)
    x, y = data[:-1].view(B, T), data[1:].view(B, T)
    times, losses = [], []
    for s in range(2 + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s >= 2:
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    step_s = statistics.median(times)
    print(json.dumps({"bench": "train_step_torch", "config": name, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "batch": B, "seq": T, "steps": steps,
                      "median_step_ms": round(step_s * 1e3, 2),
                      "tok_per_s": round(B * T / step_s, 1),
                      "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
                      "ok": losses[-1] < losses[0]}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="all", choices=["small", "124m", "all"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.config in ("small", "all"):
        run("4L-256C", 4, 4, 256, 50257, 4, 64, args.steps)
    if args.config in ("124m", "all"):
        run("124M", 12, 12, 768, 50257, 4, 64, args.steps)


if __name__ == "__main__":
    main()
