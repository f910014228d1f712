"""Compare rpv's outputs (rpv.json beside this file, from prepare.ts) with transformers and PEFT."""
import json, sys, os, subprocess, traceback
X = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get('OUT', '/tmp')
res = {'env': {}}
def save():
    json.dump(res, open(os.path.join(OUT, 'xcheck.json'), 'w'), indent=1)
for mod in ['numpy', 'torch', 'transformers', 'tokenizers', 'peft', 'safetensors', 'jinja2']:
    try:
        m = __import__(mod); res['env'][mod] = getattr(m, '__version__', '?')
    except Exception as e:
        res['env'][mod] = 'missing: %s' % e
save()
print(json.dumps(res['env']))
try:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
except Exception:
    print(subprocess.run([sys.executable, '-m', 'pip', 'list'], capture_output=True, text=True).stdout[-3000:])
    sys.exit(0)
rpv = json.load(open(os.path.join(X, 'rpv.json')))
text = rpv['text']
def logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return [float(lp[t, ids[t + 1]]) for t in range(len(ids) - 1)]
def cmp(name, ours, ids):
    d = max(abs(a - b) for a, b in zip(ours['logprobs'][1:], ref_lp(ids)))
    return d
for arch, r in rpv['models'].items():
    out = res[arch] = {}
    try:
        d = os.path.join(X, arch)
        tok = AutoTokenizer.from_pretrained(d)
        ids = tok(text)['input_ids']
        out['tokenizer_class'] = type(tok).__name__
        out['ids_equal'] = ids == r['base']['ids']
        if not out['ids_equal']: out['ids_hf'] = ids; out['ids_rpv'] = r['base']['ids']
        out['decode_equal'] = tok.decode(ids) == text
        msgs = rpv['messages']
        out['chat_equal'] = tok.apply_chat_template(msgs, tokenize=False) == r['rendered']
        out['chat_gen_equal'] = tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True) == r['renderedGen']
        out['chat_ids_equal'] = tok(r['rendered'])['input_ids'] == r['chatIds']
        model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
        hf = logprobs(model, r['base']['ids'])
        out['base_maxdiff'] = max(abs(a - b) for a, b in zip(r['base']['logprobs'][1:], hf))
        out['base_total_hf'] = sum(hf); out['base_total_rpv'] = r['base']['total']
        try:
            from peft import PeftModel
            pm = PeftModel.from_pretrained(model, os.path.join(X, arch + '-adapter')).eval()
            hfa = logprobs(pm, r['adapter']['ids'])
            out['adapter_maxdiff'] = max(abs(a - b) for a, b in zip(r['adapter']['logprobs'][1:], hfa))
            out['adapter_total_hf'] = sum(hfa); out['adapter_total_rpv'] = r['adapter']['total']
        except Exception as e:
            out['peft_error'] = traceback.format_exc()[-1500:]
        mm = AutoModelForCausalLM.from_pretrained(os.path.join(X, arch + '-merged'), torch_dtype=torch.float32).eval()
        hfm = logprobs(mm, r['merged']['ids'])
        out['merged_maxdiff'] = max(abs(a - b) for a, b in zip(r['merged']['logprobs'][1:], hfm))
        out['merged_vs_rpv_adapter_maxdiff'] = max(abs(a - b) for a, b in zip(r['adapter']['logprobs'][1:], hfm))
    except Exception:
        out['error'] = traceback.format_exc()[-3000:]
    save()
print(json.dumps(res, indent=1)[:6000])
