#!/usr/bin/python3
"""PyTorch peer of bench/train-step.ts: the same Qwen2/Llama decoder, LoRA and video projector,
read from the same files, trained on the same batch with the same optimizer, timed the same way.

Usage (bench/train-step.ts runs it):
  train_step_torch.py SPEC.json   the timed run
  train_step_torch.py --probe     only the peer's configuration (one JSON line)
SPEC: {"model": dir, "adapter": dir, "batch": file.json, "features": file.bin, "warmup": n,
       "steps": n, "threads": n, "lr": x}
Prints one JSON line: {"torch": version, "threads": n, "ms": [...], "losses": [...],
"peer": {...}} where "peer" is what this very process ran on (see peer_config).
Runs with Debian's python3-torch (the system /usr/bin/python3).
"""
import ctypes
import json
import math
import os
import re
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + start : base + end]), dtype=dtypes[info["dtype"]])
        out[name] = t.reshape(info["shape"]).float()
    return out


def mapped_libraries():
    """Shared objects mapped into this process (Linux), as real paths."""
    out = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    out.add(os.path.realpath(parts[5]))
    except OSError:
        pass
    return sorted(out)


def build_setting(config, key):
    """A `KEY=value` of torch's build settings (torch.__config__.show())."""
    m = re.search(r"\b" + key + r"=([^,\s]+)", config)
    return m.group(1) if m else None


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p), ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def sgemm_provider(libs):
    """Real path of the library whose sgemm_ libtorch_cpu binds to (dlsym through libtorch's own
    dependency order, then dladdr), or None when libtorch has no external sgemm_."""
    torch_cpu = next((p for p in libs if os.path.basename(p).startswith("libtorch_cpu.so")), None)
    if torch_cpu is None:
        return None
    try:
        addr = ctypes.cast(ctypes.CDLL(torch_cpu).sgemm_, ctypes.c_void_p).value
    except AttributeError:
        return None
    info = _DlInfo()
    if ctypes.CDLL(None).dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) == 0 or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def peer_config():
    """The BLAS and threads this process really runs on, after a matmul has loaded everything.

    torch's BLAS_INFO is a build setting: Debian builds against the generic libblas.so.3 interface
    (BLAS_INFO=generic), and which library answers it is decided at run time by the libblas.so.3
    alternative: the Netlib reference BLAS (libblas3: no blocking, no threads) or OpenBLAS
    (libopenblas0-pthread). So the answer is the library that provides the sgemm_ libtorch calls,
    read in this very process; OpenBLAS is then asked for its own configuration and threads.
    """
    a = torch.randn(64, 64)
    (a @ a).sum().item()
    libs = mapped_libraries()
    blas_info = build_setting(torch.__config__.show(), "BLAS_INFO")
    provider = sgemm_provider(libs)
    info = {
        "torch": torch.__version__,
        "blasInfo": blas_info,
        "sgemmFrom": provider,
        "torchThreads": torch.get_num_threads(),
        "interopThreads": torch.get_num_interop_threads(),
        "parallelBackend": next((l.split(":", 1)[1].strip() for l in torch.__config__.parallel_info().splitlines() if l.startswith("ATen parallel backend")), None),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    name = provider or ""
    openblas = [p for p in libs if "libopenblas" in os.path.basename(p)]
    if "openblas" in name and openblas:
        lib = ctypes.CDLL(openblas[0])
        lib.openblas_get_config.restype = ctypes.c_char_p
        info.update(blas="openblas", blasLibrary=openblas[0], blasConfig=lib.openblas_get_config().decode(), blasThreads=lib.openblas_get_num_threads())
    elif "mkl" in name:
        info.update(blas="mkl", blasLibrary=provider)
    elif "blis" in name:
        info.update(blas="blis", blasLibrary=provider)
    elif "/blas/" in name:
        # Debian's libblas3 (/usr/lib/<arch>/blas/libblas.so.3): the Netlib reference implementation.
        info.update(blas="reference", blasLibrary=provider)
    elif provider is None and blas_info and blas_info not in ("generic", "open"):
        # Linked into libtorch itself (pip wheels carry MKL statically).
        info.update(blas=blas_info, blasLibrary="linked into libtorch")
    else:
        info.update(blas="unknown", blasLibrary=provider)
    return info


def main():
    if sys.argv[1] == "--probe":
        print(json.dumps(peer_config()))
        return
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    cfg = json.load(open(f"{spec['model']}/config.json"))
    W = read_safetensors(f"{spec['model']}/model.safetensors")
    adapter_cfg = json.load(open(f"{spec['adapter']}/adapter_config.json"))
    A = read_safetensors(f"{spec['adapter']}/adapter_model.safetensors")
    P = read_safetensors(f"{spec['adapter']}/projector.safetensors")
    batch = json.load(open(spec["batch"]))

    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    L = cfg["num_hidden_layers"]
    eps = cfg["rms_norm_eps"]
    theta = cfg["rope_theta"]
    tied = cfg.get("tie_word_embeddings", False)
    r = adapter_cfg["r"]
    scaling = adapter_cfg["lora_alpha"] / (math.sqrt(r) if adapter_cfg.get("use_rslora") else r)

    B, T = batch["batch"], batch["seqLen"]
    ids = torch.tensor(batch["inputIds"], dtype=torch.long).reshape(B, T)
    labels = torch.tensor(batch["labels"], dtype=torch.long).reshape(B, T)
    fshape = batch["featureShape"]
    feats = torch.frombuffer(bytearray(open(spec["features"], "rb").read()), dtype=torch.float32).reshape(fshape)
    video_id = batch["videoTokenId"]

    # Trainable: LoRA A/B and the projector (PEFT / LLaVA names and shapes).
    params = {}
    for name, t in A.items():
        params[name] = t.clone().requires_grad_(True)
    proj = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    trainable = list(params.values()) + list(proj.values())
    opt = torch.optim.Adam(trainable, lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8)

    def lora(module_path, x):
        a = params.get(f"base_model.model.{module_path}.lora_A.weight")
        if a is None:
            return 0
        b = params[f"base_model.model.{module_path}.lora_B.weight"]
        return (x @ a.t()) * scaling @ b.t()

    def lin(prefix, x):
        y = x @ W[f"{prefix}.weight"].t()
        if f"{prefix}.bias" in W:
            y = y + W[f"{prefix}.bias"]
        return y + lora(prefix, x)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    pos = torch.arange(T, dtype=torch.float32)
    ang = torch.outer(pos, inv)
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]

    def rot(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return torch.cat([-x2, x1], -1)

    causal = torch.full((T, T), float("-inf")).triu(1)
    is_video = ids == video_id
    train_pos = labels[:, 1:] != -100

    def loss_fn():
        x = W["model.embed_tokens.weight"][ids]
        h1 = F.gelu(feats.reshape(-1, fshape[2]) @ proj["projector.0.weight"].t() + proj["projector.0.bias"])
        v = (h1 @ proj["projector.2.weight"].t() + proj["projector.2.bias"]).reshape(B, fshape[1], H)
        rows = []
        for b in range(B):
            n = int(is_video[b].sum())
            rows.append(v[b, :n])
        x = x.clone()
        x[is_video] = torch.cat(rows, 0)
        for i in range(L):
            p = f"model.layers.{i}"
            hn = rms(x, W[f"{p}.input_layernorm.weight"])
            q = lin(f"{p}.self_attn.q_proj", hn).view(B, T, nh, hd).transpose(1, 2)
            k = lin(f"{p}.self_attn.k_proj", hn).view(B, T, nkv, hd).transpose(1, 2)
            vv = lin(f"{p}.self_attn.v_proj", hn).view(B, T, nkv, hd).transpose(1, 2)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            k = k.repeat_interleave(nh // nkv, 1)
            vv = vv.repeat_interleave(nh // nkv, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, -1)
            o = (att @ vv).transpose(1, 2).reshape(B, T, nh * hd)
            x = x + lin(f"{p}.self_attn.o_proj", o)
            hn = rms(x, W[f"{p}.post_attention_layernorm.weight"])
            g = lin(f"{p}.mlp.gate_proj", hn)
            u = lin(f"{p}.mlp.up_proj", hn)
            x = x + lin(f"{p}.mlp.down_proj", F.silu(g) * u)
        x = rms(x, W["model.norm.weight"])
        hsel = x[:, :-1][train_pos]
        head = W["model.embed_tokens.weight"] if tied else W["lm_head.weight"]
        logp = torch.log_softmax(hsel @ head.t(), -1)
        tgt = labels[:, 1:][train_pos]
        return -logp.gather(1, tgt[:, None]).sum() / tgt.numel()

    ms, losses = [], []
    for step in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        value = loss.item()
        elapsed = (time.perf_counter() - t0) * 1000
        losses.append(value)
        if step >= spec["warmup"]:
            ms.append(elapsed)
    max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": ms, "losses": losses, "peer": peer_config(), "maxRssKB": max_rss_kb}))


if __name__ == "__main__":
    main()
