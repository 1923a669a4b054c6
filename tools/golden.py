#!/usr/bin/env python3
"""Golden outputs of a bundled model, computed by transformers in float32 on the CPU.

    python3 tools/golden.py MODEL_DIR [--quant-emulation auto|none|nvfp4-w4a4|nvfp4-w4a16|fp8-dynamic]
                            [--heldout models/heldout.txt] [--threads N] [--check-only]

Writes MODEL_DIR/golden.json.

Weights: a BF16/F16/F32 folder is loaded with from_pretrained(dtype=float32). A folder written by
`nibble quantize` (compressed-tensors) is read here with our own safetensors reader and dequantized in
float32 (spec formats.md):
  * NVFP4 (CT): w = e2m1(code) * fl32(fp32(e4m3(weight_scale)) / weight_global_scale), i.e. the effective
    block scale is formed first (scale / global scale in float32), then multiplied by the E2M1 value;
    nibbles are low = even K index (2.3, 2.4).
  * FP8 (CT, channel/tensor/block): w = fp32(e4m3) * fp32(weight_scale) (4.1).
  The dequantized float32 weights (original HF names) go into a temporary folder with the config minus its
  quantization_config, loaded by from_pretrained(dtype=float32).
Activations (forward pre-hooks on every quantized linear, or a replacement of transformers' fused-experts
forward that applies the same per-expert quantizers):
  * nvfp4-w4a4 (2.6): per 16 elements along K of each row: amax; s = E4M3_sat(igs * (amax / 6)), a zero s
    becomes 0.125; e = fl32(s / igs); q = RNE_E2M1(clamp(x / e, -6, 6)); x' = q * e.
  * fp8-dynamic (4.1): per row (token): s = amax_row / 448; q = E4M3_sat(x / s) (RNE, saturating at 448);
    x' = q * s (an all-zero row stays zero).
  * nvfp4-w4a16 / none: no activation quantization.
The E2M1 and E4M3 codecs are implemented here (RNE, saturating), not taken from torch's float8 cast.

Outputs: for each prompt, its text, token ids (saved tokenizer, add_special_tokens=False), float32
last-position logits over the full vocabulary (each rounded to 6 significant digits), and a 32-token greedy
continuation (full recompute each step, no KV cache, no stop at EOS) with ids, text and the top-1 minus
top-2 logit margin at every step; plus windowed perplexity on the held-out text: its first T = 4096
tokens cut into chunks tokens[i*N : i*N+N+1] (N = 128; the last chunk is shorter), each scored from an empty
context; mean NLL per predicted token (T - 1 of them) and exp of it.
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np
import torch

N_WINDOW = 128
T_TOKENS = 4096
N_GREEDY = 32

PROMPTS = [
    ("code_def", "def fibonacci(n):\n    "),
    ("code_class", "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, "),
    ("code_loop", "    for i in range(len(items)):\n        if "),
    ("docstring", '    """Return the number of'),
    ("prose", "This module provides functions for working with"),
    ("chat", None),  # rendered with the saved chat template
]
CHAT_MESSAGES = [{"role": "user", "content": "Write a function that returns the sum of a list."}]

# --------------------------------------------------------------------------------------------------------
# Number formats (formats.md 1.1-1.3)

E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e2m1_table():
    return np.array([(-1.0 if c & 8 else 1.0) * E2M1_VALUES[c & 7] for c in range(16)], dtype=np.float32)


def e4m3_table():
    t = np.zeros(256, dtype=np.float32)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            v = float("nan")
        elif e == 0:
            v = m * 2.0 ** -9
        else:
            v = (1 + m / 8) * 2.0 ** (e - 7)
        t[b] = -v if s else v
    return t


def round_e2m1(x):
    """RNE to the E2M1 grid with saturation at +-6 (thresholds of formats.md 1.2); float32 in, float32 out."""
    a = x.abs().clamp(max=6.0)
    q = torch.where(a <= 0.25, torch.zeros_like(a),
        torch.where(a < 0.75, torch.full_like(a, 0.5),
        torch.where(a <= 1.25, torch.full_like(a, 1.0),
        torch.where(a < 1.75, torch.full_like(a, 1.5),
        torch.where(a <= 2.5, torch.full_like(a, 2.0),
        torch.where(a < 3.5, torch.full_like(a, 3.0),
        torch.where(a <= 5.0, torch.full_like(a, 4.0), torch.full_like(a, 6.0))))))))
    return torch.where(x < 0, -q, q)


def round_e4m3_sat(x):
    """RNE to the E4M3 (fn) grid, saturating at +-448 (never NaN); subnormals step 2^-9. float32 in/out."""
    a = x.abs().clamp(max=448.0)
    _, ex = torch.frexp(a)  # a = m * 2^ex, m in [0.5, 1): unbiased exponent of a is ex - 1
    e = torch.clamp(ex - 1, min=-6)
    step = torch.pow(torch.tensor(2.0, dtype=torch.float32), (e - 3).to(torch.float32))
    q = torch.round(a / step) * step  # torch.round is half-to-even; a / step is exact (power of two)
    q = q.clamp(max=448.0)
    return torch.where(x < 0, -q, q)


def fq_nvfp4(x, igs):
    """W4A4 activation fake-quant (2.6) along the last dim in blocks of 16, float32."""
    shp = x.shape
    k = shp[-1]
    assert k % 16 == 0, f"K={k} is not a multiple of 16"
    xb = x.float().reshape(-1, k // 16, 16)
    amax = xb.abs().amax(dim=-1, keepdim=True)
    g = torch.tensor(igs, dtype=torch.float32)
    s = round_e4m3_sat((g * (amax / 6.0)).clamp(max=448.0))
    s = torch.where(s == 0, torch.full_like(s, 0.125), s)
    eff = s / g
    q = round_e2m1((xb / eff).clamp(-6.0, 6.0))
    return (q * eff).reshape(shp).to(x.dtype)


def fq_fp8_token(x):
    """FP8 dynamic per-token activation fake-quant (4.1), float32."""
    xf = x.float()
    amax = xf.abs().amax(dim=-1, keepdim=True)
    s = amax / 448.0
    safe = torch.where(s == 0, torch.ones_like(s), s)
    q = round_e4m3_sat(xf / safe)
    return torch.where(s == 0, torch.zeros_like(xf), q * s).to(x.dtype)


# --------------------------------------------------------------------------------------------------------
# safetensors reading (our own; F8_E4M3 is returned as raw bytes)

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=np.uint8)
        dt, shape = info["dtype"], info["shape"]
        if dt == "F32":
            arr = raw.view(np.float32)
        elif dt == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        elif dt == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt in ("U8", "F8_E4M3"):
            arr = raw
        elif dt == "I64":
            arr = raw.view(np.int64)
        elif dt == "I32":
            arr = raw.view(np.int32)
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {dt} not handled")
        out[name] = (dt, arr.reshape(shape) if shape else arr.reshape(()))
    return out


def load_all_tensors(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise SystemExit(f"{folder}: no .safetensors files")
    t = {}
    for f in files:
        t.update(read_safetensors(os.path.join(folder, f)))
    return t


E2M1_T = e2m1_table()
E4M3_T = e4m3_table()


def dequant_nvfp4_ct(packed, scale, gscale):
    n, k2 = packed.shape
    codes = np.empty((n, k2 * 2), dtype=np.uint8)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    vals = E2M1_T[codes]
    s = E4M3_T[scale]  # [n, k/16]
    if np.isnan(s).any() or (scale & 0x80).any():
        raise ValueError("NaN or negative NVFP4 block scale")
    gs = np.float32(np.asarray(gscale, dtype=np.float32).reshape(-1)[0])
    eff = (s / gs).astype(np.float32)  # scale / global scale in float32 first
    return (vals.reshape(n, -1, 16) * eff[:, :, None]).reshape(n, k2 * 2).astype(np.float32)


def dequant_fp8(w, scale):
    v = E4M3_T[w]
    sc = np.asarray(scale, dtype=np.float32)
    n, k = v.shape
    if sc.size == 1:
        return (v * sc.reshape(())).astype(np.float32)
    if sc.shape == (n, 1) or sc.shape == (n,):
        return (v * sc.reshape(n, 1)).astype(np.float32)
    # block [ceil(n/bn), ceil(k/bk)], 128x128
    bn, bk = -(-n // sc.shape[0]), -(-k // sc.shape[1])
    full = np.repeat(np.repeat(sc, bn, axis=0), bk, axis=1)[:n, :k]
    return (v * full).astype(np.float32)


def dequantize_folder(folder):
    """Returns (float32 state dict with HF names, {module prefix: {"kind", "igs"}}, detected scheme)."""
    raw = load_all_tensors(folder)
    sd, qmods = {}, {}
    has_fp4 = has_fp8 = has_igs = False
    for name, (dt, arr) in raw.items():
        if name.endswith(".weight_packed"):
            p = name[: -len(".weight_packed")]
            w = dequant_nvfp4_ct(arr, raw[p + ".weight_scale"][1], raw[p + ".weight_global_scale"][1])
            sd[p + ".weight"] = w
            igs = None
            if p + ".input_global_scale" in raw:
                igs = float(np.asarray(raw[p + ".input_global_scale"][1], dtype=np.float32).reshape(-1)[0])
                has_igs = True
            qmods[p] = {"kind": "nvfp4", "igs": igs}
            has_fp4 = True
        elif name.endswith(".weight") and dt == "F8_E4M3":
            p = name[: -len(".weight")]
            sd[name] = dequant_fp8(arr, raw[p + ".weight_scale"][1])
            qmods[p] = {"kind": "fp8", "igs": None}
            has_fp8 = True
        elif name.endswith((".weight_scale", ".weight_global_scale", ".input_global_scale", ".input_scale",
                            ".weight_zero_point")):
            continue
        elif dt in ("U8", "F8_E4M3"):
            raise ValueError(f"{folder}: unexpected quantized tensor {name}")
        else:
            sd[name] = np.asarray(arr, dtype=np.float32)
    if has_fp4 and has_fp8:
        raise ValueError("mixed NVFP4/FP8 checkpoints not handled")
    scheme = "none"
    if has_fp4:
        scheme = "nvfp4-w4a4" if has_igs else "nvfp4-w4a16"
    elif has_fp8:
        scheme = "fp8-dynamic"
    return sd, qmods, scheme


# --------------------------------------------------------------------------------------------------------
# Model loading

def load_model(folder, emulation, workdir):
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    info = {"weights": "from_pretrained, upcast to float32"}
    qmods = {}
    detected = "none"
    src = folder
    if "quantization_config" in cfg:
        qc = cfg["quantization_config"]
        if qc.get("quant_method") != "compressed-tensors":
            raise SystemExit(f"{folder}: only compressed-tensors quantized folders are handled")
        sd, qmods, detected = dequantize_folder(folder)
        cfg2 = dict(cfg)
        del cfg2["quantization_config"]
        cfg2["torch_dtype"] = "float32"
        cfg2["dtype"] = "float32"
        src = os.path.join(workdir, "dequant")
        os.makedirs(src, exist_ok=True)
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump(cfg2, f)
        from safetensors.torch import save_file
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                  os.path.join(src, "model.safetensors"), metadata={"format": "pt"})
        info = {"weights": "dequantized here in float32 (CT formulas), loaded with from_pretrained",
                "quantized_modules": len(qmods), "format": qc.get("format")}
    if emulation == "auto":
        emulation = detected
    if emulation != detected:
        raise SystemExit(f"{folder}: --quant-emulation {emulation} but the checkpoint holds {detected}")
    kw = {"attn_implementation": "eager"}
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32, **kw)
    model.eval()
    model.float()
    if qmods:  # check that every quantized weight arrived unchanged
        params = dict(model.named_parameters())
        for p in list(qmods)[:3]:
            if p + ".weight" in params:
                w = params[p + ".weight"].detach().numpy()
                if not np.array_equal(w, sd[p + ".weight"]):
                    raise SystemExit(f"{p}: weight changed on load")
        info["load_check"] = "first quantized weights equal bit for bit after from_pretrained"
    return model, emulation, qmods, info


def install_act_quant(model, emulation, qmods):
    """Forward pre-hooks for nn.Linear modules; a replacement forward for fused-expert modules."""
    if emulation not in ("nvfp4-w4a4", "fp8-dynamic"):
        return {"activation_quant": "none"}

    def quantizer(p):
        if emulation == "fp8-dynamic":
            return fq_fp8_token
        igs = qmods[p]["igs"]
        if igs is None:
            raise SystemExit(f"{p}: W4A4 emulation but no input_global_scale")
        return lambda x: fq_nvfp4(x, igs)

    n_hooks, fused = 0, {}
    for p in qmods:
        try:
            mod = model.get_submodule(p)
        except AttributeError:
            mod = None
        if isinstance(mod, torch.nn.Linear):
            fn = quantizer(p)
            mod.register_forward_pre_hook(lambda m, args, fn=fn: (fn(args[0]),) + tuple(args[1:]))
            n_hooks += 1
            continue
        # model.layers.L.mlp.experts.E.{gate,up,down}_proj held fused by transformers 5
        parts = p.split(".")
        if len(parts) >= 3 and parts[-3] == "experts":
            fused.setdefault(".".join(parts[:-2]), {})[(int(parts[-2]), parts[-1])] = quantizer(p)
            continue
        raise SystemExit(f"{p}: quantized module not found in the transformers model")
    for ep, qs in fused.items():
        patch_fused_experts(model.get_submodule(ep), qs)
    return {"activation_quant": emulation, "linear_pre_hooks": n_hooks, "fused_expert_modules_patched": len(fused)}


def patch_fused_experts(mod, qs):
    """Replace transformers 5's fused experts forward (gate_up_proj [E, 2I, H], gate rows first; down_proj
    [E, H, I]) by the same loop with each expert's input quantizers applied."""
    gu, dn = mod.gate_up_proj, mod.down_proj
    n_e, two_i, _ = gu.shape
    n_i = two_i // 2
    act = mod.act_fn

    def forward(hidden_states, top_k_index, top_k_weights, *args, **kwargs):
        out = torch.zeros_like(hidden_states)
        for e in range(n_e):
            tok, pos = torch.where(top_k_index == e)
            if tok.numel() == 0:
                continue
            x = hidden_states[tok]
            g = torch.nn.functional.linear(qs[(e, "gate_proj")](x), gu[e, :n_i])
            u = torch.nn.functional.linear(qs[(e, "up_proj")](x), gu[e, n_i:])
            h = act(g) * u
            y = torch.nn.functional.linear(qs[(e, "down_proj")](h), dn[e])
            out.index_add_(0, tok, y * top_k_weights[tok, pos, None].to(y.dtype))
        return out

    mod.forward = forward


def check_fused_patch(model):
    """With identity quantizers, the replacement must reproduce transformers' own experts forward."""
    checked = 0
    for name, mod in model.named_modules():
        if hasattr(mod, "gate_up_proj") and hasattr(mod, "down_proj") and not isinstance(mod, torch.nn.Linear):
            n_e = mod.gate_up_proj.shape[0]
            ident = {(e, k): (lambda x: x) for e in range(n_e) for k in ("gate_proj", "up_proj", "down_proj")}
            g = torch.Generator().manual_seed(0)
            h = torch.randn(7, mod.gate_up_proj.shape[2], generator=g)
            idx = torch.stack([torch.randperm(n_e, generator=g)[:2] for _ in range(7)])
            w = torch.rand(7, 2, generator=g)
            with torch.no_grad():
                ref = mod(h, idx, w)
                orig = mod.forward
                patch_fused_experts(mod, ident)
                got = mod(h, idx, w)
                mod.forward = orig
            err = (ref - got).abs().max().item()
            if err > 1e-5 * max(1.0, ref.abs().max().item()):
                raise SystemExit(f"{name}: replacement experts forward differs by {err}")
            checked += 1
            break
    return checked


# --------------------------------------------------------------------------------------------------------

def r6(v):
    return float(f"{v:.6g}")


@torch.no_grad()
def last_logits(model, ids):
    return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


@torch.no_grad()
def greedy(model, ids, n):
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        lg = last_logits(model, seq)
        top = torch.topk(lg, 2)
        t = int(top.indices[0])
        margins.append(r6(float(top.values[0] - top.values[1])))
        out.append(t)
        seq.append(t)
    return out, margins


@torch.no_grad()
def perplexity(model, toks):
    toks = toks[:T_TOKENS]
    total, count, chunks = 0.0, 0, []
    i = 0
    while i * N_WINDOW + 1 < len(toks):
        c = toks[i * N_WINDOW: i * N_WINDOW + N_WINDOW + 1]
        x = torch.tensor([c])
        lg = model(input_ids=x[:, :-1]).logits[0].float()
        lp = torch.log_softmax(lg.double(), dim=-1)
        nll = -lp.gather(1, x[0, 1:, None]).sum().item()
        total += nll
        count += len(c) - 1
        chunks.append(r6(nll))
        i += 1
    return total, count, chunks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--quant-emulation", default="auto",
                    choices=["auto", "none", "nvfp4-w4a4", "nvfp4-w4a16", "fp8-dynamic"])
    ap.add_argument("--heldout", default=None)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import transformers
    import tokenizers
    from transformers import AutoTokenizer
    t0 = time.time()
    folder = args.model.rstrip("/")
    heldout = args.heldout or os.path.join(os.path.dirname(os.path.abspath(folder)), "heldout.txt")
    tok = AutoTokenizer.from_pretrained(folder)
    work = tempfile.mkdtemp(prefix="golden_")
    try:
        model, emulation, qmods, info = load_model(folder, args.quant_emulation, work)
        patch_checked = check_fused_patch(model) if emulation in ("nvfp4-w4a4", "fp8-dynamic") else 0
        info.update(install_act_quant(model, emulation, qmods))
        info["fused_patch_checked_modules"] = patch_checked
        prompts = []
        for name, text in PROMPTS:
            if text is None:
                text = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            lg = last_logits(model, ids)
            gen, margins = greedy(model, ids, N_GREEDY)
            prompts.append({"name": name, "text": text, "ids": ids,
                            "messages": CHAT_MESSAGES if name == "chat" else None,
                            "last_logits": [r6(v) for v in lg.tolist()],
                            "last_logits_argmax": int(lg.argmax()),
                            "last_logsumexp": r6(float(torch.logsumexp(lg.double(), 0))),
                            "greedy_ids": gen, "greedy_text": tok.decode(gen, skip_special_tokens=False),
                            "greedy_top2_margins": margins})
        with open(heldout, encoding="utf-8") as f:
            htext = f.read()
        htoks = tok(htext, add_special_tokens=False)["input_ids"]
        total, count, chunks = perplexity(model, htoks)
        mean = total / count
        res = {
            "model": os.path.basename(folder),
            "quant_emulation": emulation,
            "dtype": "float32",
            "device": "cpu",
            "tool": "tools/golden.py",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "tokenizers": tokenizers.__version__, "python": sys.version.split()[0]},
            "load": info,
            "params": {"greedy_tokens": N_GREEDY, "greedy": "argmax of float32 logits, full recompute each step, "
                       "no stop at eos", "add_special_tokens": False,
                       "logits": "full vocabulary, float32, rounded to 6 significant digits",
                       "ppl_window": N_WINDOW, "ppl_max_tokens": T_TOKENS,
                       "ppl_chunks": "tokens[i*N : i*N+N+1] of the first T tokens, each from an empty context; "
                                     "last chunk shorter; NLL in float64 over float32 logits"},
            "prompts": prompts,
            "perplexity": {"file": os.path.basename(heldout), "file_tokens": len(htoks),
                           "tokens_used": min(len(htoks), T_TOKENS), "predicted_tokens": count,
                           "nll_sum": total, "mean_nll": mean, "ppl": math.exp(mean), "chunk_nll_sums": chunks},
        }
        out = args.out or os.path.join(folder, "golden.json")
        with open(out, "w") as f:
            json.dump(res, f, separators=(",", ":"))
            f.write("\n")
        print(f"golden {folder} [{emulation}]: ppl {math.exp(mean):.4f} (mean nll {mean:.5f}, {count} tokens); "
              f"{prompts[0]['name']}: {prompts[0]['greedy_text']!r}; {time.time() - t0:.0f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
