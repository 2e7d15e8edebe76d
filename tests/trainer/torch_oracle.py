#!/usr/bin/python3
"""torch_oracle.py DIR: the PyTorch reference the trainer tests compare against.

Reads DIR/model.bin (Tessera's weights format), DIR/inputs.bin and DIR/targets.bin (int32, B*T
each) and DIR/oracle_in.txt (B, T, steps, the learning rate of each step, AdamW settings), builds
GPT-2 in float64 from those weights, independently of Tessera's code (Hugging Face layout, tied
embedding with only the V real rows in the softmax, GELU tanh approximation, LayerNorm eps 1e-5),
and writes:
  ref_loss.f64    the mean cross-entropy of the batch at the loaded weights
  ref_grads.f64   d loss / d parameters, flat in Tessera's table order (padded wte rows are 0)
  ref_steps.f64   the loss before each of `steps` AdamW updates on the same batch
  ref_params.f64  the parameters after those updates, flat in table order
AdamW is torch.optim.AdamW with decay only on matrices (every 2-D tensor, as nanoGPT), and
gradients clipped with torch.nn.utils.clip_grad_norm_. Run it with Debian's /usr/bin/python3.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = 20261126


def read_settings(path):
    s = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                s[parts[0]] = parts[1:]
    return s


def table(L, C, V_padded, maxT):
    """(name, shape) in Tessera's flat order: Hugging Face GPT2Model names."""
    t = [("wte.weight", (V_padded, C)), ("wpe.weight", (maxT, C))]
    for i in range(L):
        p = f"h.{i}."
        t += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    t += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return t


def forward(P, cfg, inp, tgt):
    L, NH, C, V = cfg["L"], cfg["NH"], cfg["C"], cfg["V"]
    B, T = inp.shape
    HS = C // NH
    x = P["wte.weight"][inp] + P["wpe.weight"][:T].unsqueeze(0)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(L):
        p = f"h.{i}."
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps=1e-5)
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, HS).transpose(1, 2)
        k = k.view(B, T, NH, HS).transpose(1, 2)
        v = v.view(B, T, NH, HS).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps=1e-5)
        h = F.gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps=1e-5)
    logits = x @ P["wte.weight"][:V].t()  # only the real vocabulary takes part
    return F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))


def flat(tensors, names):
    return np.concatenate([tensors[n].detach().reshape(-1).numpy() for n in names])


def main():
    d = sys.argv[1]
    torch.set_default_dtype(torch.float64)
    hdr = np.fromfile(os.path.join(d, "model.bin"), dtype="<i4", count=256)
    if hdr[0] != MAGIC:
        sys.exit(f"{d}/model.bin: bad magic {hdr[0]}")
    maxT, V, Vp, L, NH, C = (int(v) for v in hdr[2:8])
    cfg = {"L": L, "NH": NH, "C": C, "V": V}
    data = np.fromfile(os.path.join(d, "model.bin"), dtype="<f4", offset=1024)
    tab = table(L, C, Vp, maxT)
    if data.size != sum(int(np.prod(s)) for _, s in tab):
        sys.exit(f"model.bin holds {data.size} floats, the table needs more or fewer")
    P, off = {}, 0
    for name, shape in tab:
        n = int(np.prod(shape))
        P[name] = torch.tensor(data[off:off + n].astype(np.float64).reshape(shape),
                               requires_grad=True)
        off += n
    names = [n for n, _ in tab]

    s = read_settings(os.path.join(d, "oracle_in.txt"))
    B, T, steps = int(s["B"][0]), int(s["T"][0]), int(s["steps"][0])
    lrs = [float(v) for v in s["lrs"]]
    beta1, beta2 = float(s["beta1"][0]), float(s["beta2"][0])
    eps, wd, clip = float(s["eps"][0]), float(s["weight_decay"][0]), float(s["grad_clip"][0])
    inp = torch.from_numpy(np.fromfile(os.path.join(d, "inputs.bin"), dtype="<i4")
                           .astype(np.int64).reshape(B, T))
    tgt = torch.from_numpy(np.fromfile(os.path.join(d, "targets.bin"), dtype="<i4")
                           .astype(np.int64).reshape(B, T))

    loss = forward(P, cfg, inp, tgt)
    loss.backward()
    np.array([loss.item()]).tofile(os.path.join(d, "ref_loss.f64"))
    grads = {n: P[n].grad for n in names}
    flat(grads, names).astype(np.float64).tofile(os.path.join(d, "ref_grads.f64"))

    params = [P[n] for n in names]
    decay = [P[n] for n, shape in tab if len(shape) == 2]
    no_decay = [P[n] for n, shape in tab if len(shape) != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lrs[0], betas=(beta1, beta2), eps=eps)
    step_losses, norms = [], []
    for k in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = forward(P, cfg, inp, tgt)
        loss.backward()
        step_losses.append(loss.item())
        if clip > 0:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip)))
        for g in opt.param_groups:
            g["lr"] = lrs[k]
        opt.step()
    np.array(step_losses).tofile(os.path.join(d, "ref_steps.f64"))
    flat(P, names).astype(np.float64).tofile(os.path.join(d, "ref_params.f64"))
    print("torch oracle: loss %.9f, grad norms %s" % (step_losses[0],
                                                     " ".join("%.4g" % n for n in norms)))


if __name__ == "__main__":
    main()
