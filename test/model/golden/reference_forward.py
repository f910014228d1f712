"""
Independent numpy (float64) forward of a Hugging Face Llama/Qwen2 folder, written from
transformers' modeling_llama.py / modeling_qwen2.py (eager attention, repeat_kv, rotate_half,
llama3 rope scaling). It produced the golden files beside it:

    npx tsx src/cli.ts make-tiny-model /tmp/g-llama --arch llama --hidden 64 --layers 3 --heads 8 \
        --kv-heads 2 --seed 4 --vocab 600 --init-std 0.3
    python3 test/model/golden/reference_forward.py /tmp/g-llama '<ids from rpv score --json>'

model.test.ts checks that rpv's tfjs forward reproduces these log-probabilities.
"""
import json, struct, sys, math
import numpy as np

def read_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8+n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; raw = b[8+n+s:8+n+e]
        if v['dtype'] == 'F32': a = np.frombuffer(raw, '<f4')
        elif v['dtype'] == 'F16': a = np.frombuffer(raw, '<f2')
        elif v['dtype'] == 'BF16': a = (np.frombuffer(raw, '<u2').astype(np.uint32) << 16).view(np.float32)
        out[k] = a.astype(np.float64).reshape(v['shape'])
    return out

def main(d, ids):
    c = json.load(open(f'{d}/config.json')); W = read_st(f'{d}/model.safetensors')
    H, nh, nkv = c['hidden_size'], c['num_attention_heads'], c['num_key_value_heads']
    hd = c.get('head_dim') or H // nh; eps = c['rms_norm_eps']; theta = c['rope_theta']
    inv = 1.0 / (theta ** (np.arange(0, hd, 2) / hd))
    rs = c.get('rope_scaling')
    if rs and rs.get('rope_type', rs.get('type')) == 'llama3':
        f, lo, hi, old = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'], rs['original_max_position_embeddings']
        wl = 2 * math.pi / inv
        new = np.where(wl > old / lo, inv / f, inv)
        sm = (old / wl - lo) / (hi - lo)
        smoothed = (1 - sm) * new / f + sm * new
        med = ~(wl < old / hi) & ~(wl > old / lo)
        inv = np.where(med, smoothed, new)
    T = len(ids); pos = np.arange(T)
    fr = np.outer(pos, inv); emb = np.concatenate([fr, fr], -1); cos, sin = np.cos(emb), np.sin(emb)
    def rot(x):
        x1, x2 = x[..., :hd//2], x[..., hd//2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin
    def norm(x, w): return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))
    def lin(x, p, bias=True):
        y = x @ W[p + '.weight'].T
        return y + W[p + '.bias'] if (p + '.bias') in W else y
    x = W['model.embed_tokens.weight'][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(c['num_hidden_layers']):
        p = f'model.layers.{i}'
        h = norm(x, W[p + '.input_layernorm.weight'])
        q = lin(h, p + '.self_attn.q_proj').reshape(T, nh, hd).transpose(1, 0, 2)
        k = lin(h, p + '.self_attn.k_proj').reshape(T, nkv, hd).transpose(1, 0, 2)
        v = lin(h, p + '.self_attn.v_proj').reshape(T, nkv, hd).transpose(1, 0, 2)
        q, k = rot(q), rot(k)
        k = np.repeat(k, nh // nkv, 0); v = np.repeat(v, nh // nkv, 0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, nh * hd)
        x = x + lin(a, p + '.self_attn.o_proj')
        h = norm(x, W[p + '.post_attention_layernorm.weight'])
        g = lin(h, p + '.mlp.gate_proj'); u = lin(h, p + '.mlp.up_proj')
        x = x + lin(g / (1 + np.exp(-g)) * u, p + '.mlp.down_proj')
    x = norm(x, W['model.norm.weight'])
    head = W.get('lm_head.weight', W['model.embed_tokens.weight'])
    logits = x @ head.T
    m = logits.max(-1, keepdims=True); lse = m + np.log(np.exp(logits - m).sum(-1, keepdims=True))
    lp = logits - lse
    return [float(lp[t, ids[t + 1]]) for t in range(T - 1)]

if __name__ == '__main__':
    d = sys.argv[1]; ids = json.loads(sys.argv[2])
    print(json.dumps(main(d, ids)))
