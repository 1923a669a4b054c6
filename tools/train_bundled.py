#!/usr/bin/env python3
"""Train the two bundled tiny models (models/qwen3-tiny, models/qwen3-moe-tiny).

Runs on the GPU machine (PyTorch + transformers + tokenizers). Everything is seeded; the corpus is the
Python standard library's source found on that machine (a few files are held out as models/heldout.txt).

    python3 tools/train_bundled.py --out models [--dense-steps N] [--moe-steps N] [--time-cap S]

Steps:
  1. collect the standard library's .py files (sorted; test folders, site-packages, lib2to3 and the
     table-like encodings/ and pydoc_data/ skipped), hold out a
     fixed list of files (50-100 KB) as OUT/heldout.txt;
  2. train a byte-level BPE tokenizer (Qwen2 Split regex + ByteLevel, NFC) on the rest, add the special
     tokens <|endoftext|> <|im_start|> <|im_end|> and the added tokens <think> </think>;
  3. train a dense Qwen3ForCausalLM (tied embeddings) and a Qwen3MoeForCausalLM (8 experts, top-2,
     untied lm_head) with AdamW under bf16 autocast, fp32 master weights;
  4. save each in bfloat16 with save_pretrained (safetensors, per-expert tensor names), the tokenizer with
     a ChatML template, and generation_config.json; write OUT/<name>/train_log.json.
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import transformers
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

# Qwen2/Qwen2.5/Qwen3 pre-tokenizer regex (transformers' PRETOKENIZE_REGEX; spec serving.md 5.2).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Our own short ChatML template (Qwen's shape, no tools/thinking logic).
CHAT_TEMPLATE = ("{%- for message in messages %}"
                 "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
                 "{%- endfor %}"
                 "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<think>", "</think>"]

# Held-out files (relative to the stdlib folder), taken in this order until >= 50 KB (at most 100 KB).
HELDOUT = ["textwrap.py", "shlex.py", "fractions.py", "colorsys.py", "bisect.py", "heapq.py", "glob.py",
           "fnmatch.py", "calendar.py"]


def seed_all(seed):
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("site-packages", "dist-packages", "test", "tests",
                                                      "idle_test", "__pycache__", "lib2to3",
                                                      "encodings", "pydoc_data"))
        for f in sorted(files):
            if f.endswith(".py"):
                p = os.path.join(d, f)
                try:
                    with open(p, encoding="utf-8") as fh:
                        t = fh.read()
                except (UnicodeDecodeError, OSError):
                    continue
                if t.strip():
                    out.append((os.path.relpath(p, root), t))
    out.sort()
    return out


def split_heldout(files):
    by_name = dict(files)
    held, size = [], 0
    for name in HELDOUT:
        if name in by_name and size < 50_000 and size + len(by_name[name]) <= 100_000:
            held.append(name)
            size += len(by_name[name])
    train = [(n, t) for n, t in files if n not in held]
    text = "".join(f"# file: {n}\n{by_name[n]}\n" for n in held)
    return train, held, text


def build_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL) - len(ADDED), min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in ADDED])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, model_max_length=2048)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def encode_corpus(fast, files, eot_id):
    tok = fast.backend_tokenizer
    ids = []
    texts = [t for _, t in files]
    for i in range(0, len(texts), 256):
        for enc in tok.encode_batch(texts[i:i + 256], add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eot_id)
    return torch.tensor(ids, dtype=torch.int32)


def save_kwargs(fn):
    import inspect
    try:
        return {"safe_serialization": True} if "safe_serialization" in inspect.signature(fn).parameters else {}
    except (TypeError, ValueError):
        return {}


def unfuse_experts(folder):
    """transformers 5 keeps experts fused in memory; make sure the file holds per-expert HF names."""
    from safetensors.torch import load_file, save_file
    changed = False
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".safetensors"):
            continue
        path = os.path.join(folder, fn)
        sd = load_file(path)
        out = {}
        for k, v in sd.items():
            if k.endswith("mlp.experts.gate_up_proj"):
                p = k[:-len("gate_up_proj")]
                n_i = v.shape[1] // 2
                for e in range(v.shape[0]):
                    out[f"{p}{e}.gate_proj.weight"] = v[e, :n_i].contiguous()
                    out[f"{p}{e}.up_proj.weight"] = v[e, n_i:].contiguous()
                changed = True
            elif k.endswith("mlp.experts.down_proj"):
                p = k[:-len("down_proj")]
                for e in range(v.shape[0]):
                    out[f"{p}{e}.down_proj.weight"] = v[e].contiguous()
                changed = True
            else:
                out[k] = v
        if changed:
            save_file(out, path, metadata={"format": "pt"})
            idx = os.path.join(folder, "model.safetensors.index.json")
            if os.path.exists(idx):
                raise RuntimeError("sharded save not expected for a tiny model")
    return changed


@torch.no_grad()
def greedy_sample(model, fast, prompt, n, device):
    ids = fast(prompt, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids], device=device)
    for _ in range(n):
        logits = model(input_ids=x).logits[0, -1].float()
        x = torch.cat([x, logits.argmax().view(1, 1)], dim=1)
    return fast.decode(x[0, len(ids):].tolist())


def train_model(name, model, tokens, heldout_ids, args, device, fast, extra_cfg_reset):
    seed_all(args.seed)
    model.to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    steps, bs, seq = args.steps[name], args.batch, args.seq
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    warm = 100

    def lr_at(s):
        if s < warm:
            return args.lr * (s + 1) / warm
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm)))))

    gen = torch.Generator().manual_seed(args.seed)
    data = tokens.to(device).long()
    hv = heldout_ids[: 1 + 8 * seq].to(device).long()
    hv = torch.stack([hv[i * seq:(i + 1) * seq + 1] for i in range(8)])
    log = []
    t0 = time.time()
    s = 0
    ema = None
    while s < steps:
        if time.time() - t0 > args.time_cap:
            print(f"[{name}] time cap reached at step {s}", flush=True)
            break
        starts = torch.randint(0, data.numel() - seq - 1, (bs,), generator=gen).to(device)
        idx = starts[:, None] + torch.arange(seq + 1, device=device)[None]
        batch = data[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=batch[:, :-1])
            logits = out.logits.float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            total = loss
            aux = getattr(out, "aux_loss", None)
            if aux is not None:
                total = loss + model.config.router_aux_loss_coef * aux
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        s += 1
        lv = loss.item() if (s % 50 == 0 or s == 1) else None
        if lv is not None:
            ema = lv if ema is None else 0.7 * ema + 0.3 * lv
            entry = {"step": s, "loss": round(lv, 4), "lr": lr_at(s - 1), "t": round(time.time() - t0, 1)}
            if s % 500 == 0:
                model.eval()
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    hl = model(input_ids=hv[:, :-1]).logits.float()
                    entry["heldout_loss"] = round(torch.nn.functional.cross_entropy(
                        hl.reshape(-1, hl.shape[-1]), hv[:, 1:].reshape(-1)).item(), 4)
                model.train()
                print(f"[{name}] {entry}", flush=True)
            log.append(entry)
    model.eval()
    with torch.no_grad():
        model.float()
        hl = model(input_ids=hv[:, :-1]).logits.float()
        final_held = torch.nn.functional.cross_entropy(hl.reshape(-1, hl.shape[-1]), hv[:, 1:].reshape(-1)).item()
    extra_cfg_reset(model.config)
    sample = greedy_sample(model, fast, "def read_lines(path):\n    ", 48, device)
    print(f"[{name}] steps {s}, {time.time() - t0:.0f}s, last loss {log[-1]['loss']}, heldout loss(fp32) "
          f"{final_held:.4f}, params {n_params}\n[{name}] sample: {sample!r}", flush=True)
    return {"steps_done": s, "steps_planned": steps, "seconds": round(time.time() - t0, 1), "params": n_params,
            "final_train_loss_logged": log[-1]["loss"], "final_heldout_loss_fp32": round(final_held, 4),
            "sample_prompt": "def read_lines(path):\n    ", "sample_greedy_48": sample, "log": log}


def save_model(model, fast, folder, ids):
    os.makedirs(folder, exist_ok=True)
    model = model.to("cpu").to(torch.bfloat16)
    for key in ("torch_dtype", "dtype"):
        try:
            setattr(model.config, key, torch.bfloat16)
        except Exception:
            pass
    model.save_pretrained(folder, **save_kwargs(model.save_pretrained))
    fast.save_pretrained(folder)
    gc = GenerationConfig(bos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                          eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], do_sample=True,
                          temperature=0.7, top_p=0.8, top_k=20)
    gc.save_pretrained(folder)
    unf = unfuse_experts(folder)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"saved {folder}: {size} bytes, experts unfused on save: {unf}", flush=True)
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models")
    ap.add_argument("--data-root", default=os.path.dirname(os.__file__))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dense-steps", type=int, default=1600)
    ap.add_argument("--moe-steps", type=int, default=2000)
    ap.add_argument("--time-cap", type=float, default=150.0, help="seconds per model, safety cap")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--only", choices=["dense", "moe", "both"], default="both")
    args = ap.parse_args()
    args.steps = {"qwen3-tiny": args.dense_steps, "qwen3-moe-tiny": args.moe_steps}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    seed_all(args.seed)
    t0 = time.time()

    files = collect_files(args.data_root)
    train_files, held, held_text = split_heldout(files)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write(held_text)
    n_chars = sum(len(t) for _, t in train_files)
    print(f"corpus: {len(train_files)} files, {n_chars} chars; heldout {held} ({len(held_text)} chars)", flush=True)

    rng = random.Random(args.seed)
    tok_sample = [t for _, t in train_files]
    rng.shuffle(tok_sample)
    acc, cut = 0, 0
    for cut, t in enumerate(tok_sample):
        acc += len(t)
        if acc > 12_000_000:
            break
    fast = build_tokenizer(tok_sample[:cut + 1], args.vocab)
    vocab_n = len(fast)
    ids = {s: fast.convert_tokens_to_ids(s) for s in SPECIAL + ADDED}
    tokens = encode_corpus(fast, train_files, ids["<|endoftext|>"])
    heldout_ids = torch.tensor(fast(held_text, add_special_tokens=False)["input_ids"])
    print(f"tokenizer: vocab {vocab_n}, specials {ids}; corpus {tokens.numel()} tokens; heldout "
          f"{heldout_ids.numel()} tokens; {time.time() - t0:.0f}s", flush=True)

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__, "python": sys.version.split()[0],
                "corpus": args.data_root, "corpus_files": len(train_files), "corpus_chars": n_chars,
                "corpus_tokens": int(tokens.numel()), "heldout_files": held, "seed": args.seed,
                "batch": args.batch, "seq": args.seq, "lr": args.lr, "device": torch.cuda.get_device_name(0)
                if device == "cuda" else "cpu"}

    common = dict(vocab_size=vocab_n, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=2048, rms_norm_eps=1e-6, bos_token_id=ids["<|endoftext|>"],
                  eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], attention_bias=False)
    results = {}
    if args.only in ("dense", "both"):
        seed_all(args.seed)
        cfg = transformers.Qwen3Config(hidden_size=256, intermediate_size=512, head_dim=64,
                                       tie_word_embeddings=True, **common)
        model = transformers.Qwen3ForCausalLM(cfg)
        r = train_model("qwen3-tiny", model, tokens, heldout_ids, args, device, fast, lambda c: None)
        r["bytes"] = save_model(model, fast, os.path.join(args.out, "qwen3-tiny"), ids)
        results["qwen3-tiny"] = r
    if args.only in ("moe", "both"):
        seed_all(args.seed)
        cfg = transformers.Qwen3MoeConfig(hidden_size=128, intermediate_size=256, moe_intermediate_size=128,
                                          head_dim=32, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                                          decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False,
                                          output_router_logits=True, router_aux_loss_coef=0.01, **common)
        model = transformers.Qwen3MoeForCausalLM(cfg)

        def reset(c):
            c.output_router_logits = False

        r = train_model("qwen3-moe-tiny", model, tokens, heldout_ids, args, device, fast, reset)
        r["bytes"] = save_model(model, fast, os.path.join(args.out, "qwen3-moe-tiny"), ids)
        results["qwen3-moe-tiny"] = r
    for name, r in results.items():
        with open(os.path.join(args.out, name, "train_log.json"), "w") as f:
            json.dump({"versions": versions, **r}, f, indent=1)
    print(f"train_bundled done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
