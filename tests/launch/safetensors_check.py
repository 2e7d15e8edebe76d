"""Reads a model.safetensors by hand (json + struct + numpy, no safetensors package) and checks
it against a Tessera checkpoint's model.h5 (through h5py) and the exported config.json.

usage: safetensors_check.py OUT_DIR CHECKPOINT_DIR
Every tensor of model.h5 must be in the safetensors file as "transformer.<name>", F32, with the
same shape and the same bytes; nothing else may be there (lm_head is tied to wte)."""
import json
import struct
import sys

import h5py
import numpy as np

out, ckpt = sys.argv[1], sys.argv[2]
raw = open(out + "/model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert n % 8 == 0, "header length %d is not padded to 8" % n
header = json.loads(raw[8 : 8 + n].decode("utf-8"))
data = raw[8 + n :]
assert header.pop("__metadata__", {}).get("format") == "pt"
spans = sorted((v["data_offsets"][0], v["data_offsets"][1]) for v in header.values())
assert spans[0][0] == 0 and spans[-1][1] == len(data), "the data is not covered exactly"
for (b0, e0), (b1, e1) in zip(spans, spans[1:]):
    assert e0 == b1, "gap or overlap at %d" % e0

h5 = h5py.File(ckpt + "/model.h5", "r")
names = set()
h5.visititems(lambda k, v: names.add(k) if isinstance(v, h5py.Dataset) else None)
assert set(header) == {"transformer." + k for k in names}, sorted(set(header) ^ {"transformer." + k for k in names})
for k in sorted(names):
    e = header["transformer." + k]
    assert e["dtype"] == "F32", (k, e["dtype"])
    b, end = e["data_offsets"]
    got = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    want = np.asarray(h5[k], dtype="<f4")
    assert got.shape == want.shape, (k, got.shape, want.shape)
    assert got.tobytes() == want.tobytes(), "%s differs" % k

cfg = json.load(open(out + "/config.json"))
wte = header["transformer.wte.weight"]["shape"]
assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
assert cfg["vocab_size"] == wte[0] and cfg["n_embd"] == wte[1], (cfg, wte)
assert cfg["n_positions"] == header["transformer.wpe.weight"]["shape"][0]
assert cfg["n_layer"] == len({k.split(".")[2] for k in header if k.startswith("transformer.h.")})
assert cfg["tie_word_embeddings"] is True
c_attn = header["transformer.h.0.attn.c_attn.weight"]["shape"]
assert c_attn == [cfg["n_embd"], 3 * cfg["n_embd"]], c_attn  # Conv1D: (in, out)
print("ok: %d tensors, %d bytes" % (len(header), len(data)))
