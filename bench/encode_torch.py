"""The PyTorch peer of bench/encode.ts: the same vision tower (CLIP or InternViT) as the published
modelling files define it (transformers' modeling_clip.py, OpenGVLab's modeling_intern_vit.py and
InternVL's extract_feature with pixel_shuffle, without mlp1), in float32 on the CPU, eager
attention as torch 1.13 runs it. Weights are memory-mapped from the folder's safetensors and
converted to float32 once, as `from_pretrained(torch_dtype=torch.float32)` would.

    /usr/bin/python3 bench/encode_torch.py spec.json   (spec: see bench/encode.ts runTorch)

Prints one JSON line: ms per batch (after warm-up), the features of the first batch written to
spec["out"] (float32), the peer's BLAS and threads, and the peak RSS.
"""
import json
import math
import mmap
import os
import resource
import struct
import sys
import time
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step_torch import peer_config  # noqa: E402


def mapped_safetensors(folder):
    """Every tensor of the folder's safetensors files (sharded or not), as float32."""
    warnings.filterwarnings("ignore", message="The given buffer is not writable")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {}
    for name in files:
        with open(os.path.join(folder, name), "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", mm[:8])
        header = json.loads(mm[8 : 8 + n])
        base = 8 + n
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, end = info["data_offsets"]
            raw = memoryview(mm)[base + start : base + end]
            t = torch.frombuffer(raw, dtype=dtypes[info["dtype"]]) if end > start else torch.empty(0, dtype=dtypes[info["dtype"]])
            out[key] = t.reshape(info["shape"]).float()
    return out


def strip(W, prefixes):
    """Tensors under the first prefix that has any, with the prefix removed."""
    for p in prefixes:
        sub = {k[len(p) :]: v for k, v in W.items() if k.startswith(p)}
        if sub:
            return sub
    raise SystemExit(f"no tensors under {prefixes}")


def attention(x, q, k, v, heads):
    B, T, D = x.shape
    hd = D // heads
    q = q.view(B, T, heads, hd).transpose(1, 2)
    k = k.view(B, T, heads, hd).transpose(1, 2)
    v = v.view(B, T, heads, hd).transpose(1, 2)
    w = torch.softmax((q * hd**-0.5) @ k.transpose(-1, -2), dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, T, D)


def clip_states(W, cfg, pixels, upto):
    """hidden_states[0..upto] of CLIPVisionModel (0: after pre_layrnorm)."""
    W = strip(W, ["vision_model.", ""])
    D, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("layer_norm_eps", 1e-5)
    x = F.conv2d(pixels, W["embeddings.patch_embedding.weight"], stride=cfg["patch_size"]).flatten(2).transpose(1, 2)
    cls = W["embeddings.class_embedding"].expand(x.shape[0], 1, D)
    x = torch.cat([cls, x], 1) + W["embeddings.position_embedding.weight"]
    x = F.layer_norm(x, (D,), W["pre_layrnorm.weight"], W["pre_layrnorm.bias"], eps)
    for i in range(upto):
        p = f"encoder.layers.{i}."
        h = F.layer_norm(x, (D,), W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], eps)
        lin = lambda n, t: F.linear(t, W[p + n + ".weight"], W[p + n + ".bias"])
        a = attention(h, lin("self_attn.q_proj", h), lin("self_attn.k_proj", h), lin("self_attn.v_proj", h), heads)
        x = x + lin("self_attn.out_proj", a)
        h = F.layer_norm(x, (D,), W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], eps)
        h = lin("mlp.fc1", h)
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu
        x = x + lin("mlp.fc2", h)
    return x


def internvit_states(W, cfg, pixels, upto):
    """The hidden state after block `upto` of InternVisionModel (layer norm, fused qkv, ls1/ls2)."""
    W = strip(W, ["vision_model.", ""])
    D, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("layer_norm_eps", 1e-6)
    x = F.conv2d(pixels, W["embeddings.patch_embedding.weight"], W["embeddings.patch_embedding.bias"], stride=cfg["patch_size"]).flatten(2).transpose(1, 2)
    cls = W["embeddings.class_embedding"].reshape(1, 1, D).expand(x.shape[0], 1, D)
    x = torch.cat([cls, x], 1) + W["embeddings.position_embedding"].reshape(1, -1, D)
    for i in range(upto):
        p = f"encoder.layers.{i}."
        h = F.layer_norm(x, (D,), W[p + "norm1.weight"], W[p + "norm1.bias"], eps)
        qkv = F.linear(h, W[p + "attn.qkv.weight"], W.get(p + "attn.qkv.bias"))
        q, k, v = qkv.split(D, dim=-1)
        a = F.linear(attention(h, q, k, v, heads), W[p + "attn.proj.weight"], W[p + "attn.proj.bias"])
        x = x + a * W[p + "ls1"]
        h = F.layer_norm(x, (D,), W[p + "norm2.weight"], W[p + "norm2.bias"], eps)
        h = F.gelu(F.linear(h, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"]) * W[p + "ls2"]
    return x


def pixel_shuffle(x, s):
    """InternVL's pixel_shuffle, ps_version v2."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * s), int(c / s)).permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * s), int(w * s), int(c / (s * s)))
    return x.permute(0, 2, 1, 3).contiguous()


def features(W, cfg, family, pixels, layer, shuffle):
    L = cfg["num_hidden_layers"]
    upto = layer if layer >= 0 else L + 1 + layer
    with torch.no_grad():
        if family == "clip":
            return clip_states(W, cfg, pixels, upto)[:, 1:, :]
        x = internvit_states(W, cfg, pixels, upto)[:, 1:, :]
        if shuffle != 1:
            side = int(math.isqrt(x.shape[1]))
            x = pixel_shuffle(x.reshape(x.shape[0], side, side, -1), shuffle)
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        return x


def main():
    if sys.argv[1] == "--probe":
        print(json.dumps(peer_config()))
        return
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    cfg = json.load(open(os.path.join(spec["folder"], "config.json")))
    cfg = cfg.get("vision_config", cfg)
    W = mapped_safetensors(spec["folder"])
    S = cfg["image_size"]
    B = spec["batch"]
    pixels = torch.frombuffer(bytearray(open(spec["pixels"], "rb").read()), dtype=torch.float32).reshape(-1, 3, S, S)[:B].contiguous()
    ms = []
    first = None
    for step in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        out = features(W, cfg, spec["family"], pixels, spec["layer"], spec["shuffle"])
        elapsed = (time.perf_counter() - t0) * 1000
        if first is None:
            first = out
        if step >= spec["warmup"]:
            ms.append(elapsed)
    with open(spec["out"], "wb") as f:
        f.write(first.contiguous().numpy().astype("float32").tobytes())
    max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": ms, "shape": list(first.shape), "peer": peer_config(), "maxRssKB": max_rss_kb}))


if __name__ == "__main__":
    main()
