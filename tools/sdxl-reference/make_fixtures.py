#!/usr/bin/env python3
"""Reference fixtures for the Rust SDXL worker, made with the real diffusers SDXL pipeline.

Run by hand through run.sh (never in CI). CPU, float32, fixed seeds: a rerun with the pinned
requirements rewrites the same fixtures (bit-for-bit for the tokenizer and schedule files and
the model weights; the reference tensors may differ in the last ulp across CPUs/thread counts).

Writes into <out> (normally worker/tests/fixtures/):
  tokenizer-full/   vocab.json.gz, merges.txt.gz (the full 49408-token CLIP BPE) and cases.json
  tiny-sdxl-a/      tiny random SDXL pipeline, diffusers layout, fp32, unsharded
  tiny-sdxl-b/      tiny random SDXL pipeline, other shapes, fp16 variant files, UNet sharded
  reference/        cases.json + one safetensors per pipeline run, schedules.json

See README.md beside this file for the layout and tensor names.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

if importlib.util.find_spec("ftfy") is not None:
    sys.exit(
        "ftfy is installed: CLIPTokenizer would use ftfy.fix_text instead of its BasicTokenizer clean-up, "
        "and the tokenizer fixtures must come from the BasicTokenizer path. Uninstall ftfy from this venv."
    )

import diffusers  # noqa: E402
import safetensors  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

# --------------------------------------------------------------------------------------------
# Constants copied from stabilityai/stable-diffusion-xl-base-1.0
# --------------------------------------------------------------------------------------------

# scheduler/scheduler_config.json of SDXL base, verbatim.
SDXL_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def _added_token(content: str) -> dict:
    return {
        "__type": "AddedToken",
        "content": content,
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }


def sdxl_tokenizer_config(pad_token: str) -> dict:
    """tokenizer{,_2}/tokenizer_config.json of SDXL base (they differ only in pad_token)."""
    return {
        "add_prefix_space": False,
        "bos_token": _added_token("<|startoftext|>"),
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": _added_token("<|endoftext|>"),
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": _added_token("<|endoftext|>"),
    }


def sdxl_special_tokens_map(pad_token: str) -> dict:
    def tok(c):
        d = _added_token(c)
        del d["__type"]
        return d

    return {
        "bos_token": tok("<|startoftext|>"),
        "eos_token": tok("<|endoftext|>"),
        "pad_token": pad_token,
        "unk_token": tok("<|endoftext|>"),
    }


PROMPT = "a castle on a hill, golden hour, highly detailed"
NEGATIVE = "blurry, low quality"
STEPS = 4

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def f32(x) -> float:
    """A float32 value as the shortest decimal that round-trips through f32 (keeps JSON small)."""
    return float(str(np.float32(x)))


def f32_list(t) -> list:
    if isinstance(t, torch.Tensor):
        t = t.detach().to(torch.float32).cpu().numpy()
    return [f32(v) for v in np.asarray(t, dtype=np.float32).reshape(-1)]


def write_json(path: Path, obj, indent=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=indent, ensure_ascii=False, separators=None if indent else (",", ":"))
    path.write_text(text + "\n", encoding="utf-8")


def write_gz(path: Path, data: bytes) -> None:
    """gzip with mtime 0 and no file name, so reruns are byte-identical."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())


def seeded_randn(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# 1. CLIP BPE vocabulary, built the way OpenAI's SimpleTokenizer does
# --------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_bpe(bpe_gz: Path, n_merges: int | None):
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    if n_merges is not None:
        merges = merges[:n_merges]
    merges = [tuple(m.split()) for m in merges]
    assert all(len(m) == 2 for m in merges)
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = {tok: i for i, tok in enumerate(vocab)}
    assert len(encoder) == len(vocab), "duplicate tokens in the vocabulary"
    vocab_json = json.dumps(encoder, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    merges_txt = ("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode("utf-8")
    return encoder, vocab_json, merges_txt


def write_tokenizer_dir(d: Path, vocab_json: bytes, merges_txt: bytes, pad_token: str) -> None:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "vocab.json").write_bytes(vocab_json)
    (d / "merges.txt").write_bytes(merges_txt)
    write_json(d / "tokenizer_config.json", sdxl_tokenizer_config(pad_token), indent=2)
    write_json(d / "special_tokens_map.json", sdxl_special_tokens_map(pad_token), indent=2)


def tokenizer_prompts() -> list[str]:
    words = ["the", "cat", "dog", "red", "blue", "sky", "tree", "house", "big", "small", "green", "light", "dark", "old", "new"]
    w75 = " ".join(words[i % len(words)] for i in range(75))
    w76 = " ".join(words[i % len(words)] for i in range(76))
    lorem = (
        "a breathtaking panoramic view of an ancient castle perched on a rugged hill at golden hour, "
        "volumetric light, dramatic clouds, ultra detailed stonework, ivy covered walls, banners fluttering "
        "in the wind, a winding path with travellers and horses, misty valley below, distant snowy mountains, "
        "cinematic composition, octane render, trending on artstation, 8k, sharp focus, intricate details, "
        "warm colour palette, soft shadows, by a famous painter, masterpiece, best quality, award winning"
    )
    return [
        "a photo of a cat",
        "A PHOTO OF A CAT",
        "MiXeD CaSe WoRdS",
        "hello, world!!! ... ?!? ---",
        "wow!!!!!!!!!!!!",
        "(masterpiece:1.2), [best quality], {detailed}",
        "it's the dog's bone",
        "don't can't won't",
        "they're we've i'm you'll he'd",
        "IT'S LOUD AND THEY'RE HERE",
        "it\u2019s a curly quote",
        "\"double\" and 'single' quotes",
        "1234567890",
        "the year 2024 and pi 3.14159",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
        "cafe\u0301 with a combining accent",
        "\u00c5ngstr\u00f6m \u00c9COLE \u00dcber stra\u00dfe",
        "\u0130stanbul",
        "\u4e2d\u6587\u63d0\u793a\u8bcd \u5c71\u4e0a\u7684\u57ce\u5821",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 and english",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
        "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0420\u0443\u0441\u0441\u043a\u0438\u0439",
        "\u0645\u0631\u062d\u0628\u0627",
        "emoji \U0001f431\U0001f525 party \U0001f389",
        "\U0001f44d\U0001f3fd",
        "tabs\tand\nnewlines\r\nhere",
        "multiple     spaces    between",
        "   leading and trailing   ",
        "control\x00char\x01s\x7f and \u200b zero width",
        "non\u00a0breaking\u00a0space",
        "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 and \ufb01 ligature",
        "em\u2014dash en\u2013dash hyphen-ated foo_bar baz/qux",
        "#hashtag @mention $100 50% a&b <tag>",
        "<|startoftext|>inside a prompt",
        "a <|endoftext|> b",
        "<|endoftext|><|endoftext|>",
        "<|ENDOFTEXT|> upper case",
        "",
        " ",
        "x" * 120,
        w75,
        w76,
        lorem,
    ]


def make_tokenizer_fixtures(bpe_gz: Path, out: Path, tmp: Path) -> None:
    encoder, vocab_json, merges_txt = build_bpe(bpe_gz, None)
    assert len(encoder) == 49408, len(encoder)
    assert encoder["<|startoftext|>"] == 49406 and encoder["<|endoftext|>"] == 49407 and encoder["!"] == 0
    d = out / "tokenizer-full"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    write_gz(d / "vocab.json.gz", vocab_json)
    write_gz(d / "merges.txt.gz", merges_txt)

    toks = {}
    for pad in ("<|endoftext|>", "!"):
        td = tmp / ("tok-full-" + ("eot" if pad != "!" else "bang"))
        write_tokenizer_dir(td, vocab_json, merges_txt, pad)
        toks[pad] = CLIPTokenizer.from_pretrained(td)
        assert toks[pad].pad_token == pad

    cases = []
    for text in tokenizer_prompts():
        for pad, tok in toks.items():
            ids = tok(text, padding="max_length", max_length=77, truncation=True).input_ids
            full = tok(text).input_ids
            assert len(ids) == 77
            cases.append(
                {
                    "text": text,
                    "pad": pad,
                    "input_ids": ids,
                    "truncated": len(full) > 77,
                    "untruncated_len": len(full),
                }
            )
    by_text = {c["text"]: c for c in cases}
    words75 = tokenizer_prompts()[-3]
    assert by_text[words75]["untruncated_len"] == 77 and not by_text[words75]["truncated"]
    assert by_text[tokenizer_prompts()[-2]]["truncated"] and by_text[tokenizer_prompts()[-1]]["truncated"]
    with open(d / "cases.json", "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases))
        f.write("\n]\n")
    print(f"tokenizer-full: {len(cases)} cases")


# --------------------------------------------------------------------------------------------
# 2. Tiny random SDXL pipelines
# --------------------------------------------------------------------------------------------

MODEL_SPECS = {
    "tiny-sdxl-a": dict(
        seed=1234,
        unet=dict(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
            cross_attention_dim=64,  # 32 + 32
            norm_num_groups=32,
        ),
        vae=dict(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=128,
            scaling_factor=0.13025,
        ),
        text_encoder=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=5,
            num_attention_heads=4,
            hidden_act="quick_gelu",
            projection_dim=32,
            eos_token_id=2,
        ),
        text_encoder_2=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=5,
            num_attention_heads=4,
            hidden_act="gelu",
            projection_dim=32,
            eos_token_id=2,
        ),
        scheduler=dict(),
        force_zeros_for_empty_prompt=True,
        variant=None,
        unet_max_shard_size=None,
        sizes=[(64, 64), (64, 48)],  # (width, height)
    ),
    "tiny-sdxl-b": dict(
        seed=5678,
        unet=dict(
            block_out_channels=(16, 32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(1, 2, 4),
            transformer_layers_per_block=(1, 1, 2),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=16,
            projection_class_embeddings_input_dim=144,  # 6 * 16 + 48
            cross_attention_dim=64,  # 24 + 40
            norm_num_groups=8,
        ),
        vae=dict(
            block_out_channels=(16, 32, 32),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4,
            layers_per_block=2,  # as in the real SDXL VAE (decoder: 3 resnets per up block)
            norm_num_groups=8,
            sample_size=128,
            scaling_factor=0.13025,
        ),
        text_encoder=dict(
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            hidden_act="quick_gelu",
            projection_dim=24,
            eos_token_id=1513,  # the real <|endoftext|> id of the 1514 vocabulary: non-legacy pooling
        ),
        text_encoder_2=dict(
            hidden_size=40,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            hidden_act="gelu",
            projection_dim=48,
            # Also the real id: SDXL only uses text_encoder_2's pooled output (text_encoder's is
            # computed and dropped), so only here does the non-legacy pooling path reach the
            # pipeline's output. Model a keeps the legacy 2 in both encoders.
            eos_token_id=1513,
        ),
        scheduler=dict(timestep_spacing="trailing", prediction_type="v_prediction"),
        force_zeros_for_empty_prompt=False,
        variant="fp16",
        unet_max_shard_size="1MB",
        sizes=[(64, 64), (96, 64)],
    ),
}

# Query/key gains applied after init (see sharpen_attention): they bring the mean normalised
# attention entropy from ~0.99 down to ~0.5-0.85 (UNet self/cross, VAE mid-block, CLIP layers).
QK_GAIN = {"unet": 3.0, "vae": 3.0, "clip": 5.0}
# The UNet's conv_out is scaled so its output has std ~1 like a trained noise predictor (~0.3 at
# default init), so the UNet's share of the final image is large enough to matter.
UNET_OUT_GAIN = 3.0

TINY_VOCAB = 256 * 2 + 1000 + 2  # 1514


def clip_config(spec: dict) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=TINY_VOCAB,
        max_position_embeddings=77,
        bos_token_id=0,
        pad_token_id=1,
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        dropout=0.0,
        **spec,
    )


@torch.no_grad()
def perturb(model: nn.Module, gen: torch.Generator, std: float = 0.02) -> None:
    """Give every parameter a non-trivial value: norms' weights/biases (1 and 0 at init) and any
    other parameter that is constant (CLIP zero-initialises its linear biases) get small noise."""
    seen = set()
    for mod in model.modules():
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
            for p in (mod.weight, mod.bias):
                if p is not None:
                    p.add_(std * torch.randn(p.shape, generator=gen))
                    seen.add(id(p))
    for _, p in model.named_parameters():
        if id(p) in seen:
            continue
        flat = p.reshape(-1)
        if flat.numel() == 1 or bool(torch.all(flat == flat[0])):
            p.add_(std * torch.randn(p.shape, generator=gen))


@torch.no_grad()
def sharpen_attention(model: nn.Module, gain: float) -> None:
    """Scale the query and key projections so attention is far from uniform. With default init the
    attention logits are ~0.1-0.3 and every softmax row is nearly flat: a wrong head split, scale,
    mask or key/value mix-up would then hardly change the output."""
    from diffusers.models.attention_processor import Attention
    from transformers.models.clip.modeling_clip import CLIPAttention

    for mod in model.modules():
        if isinstance(mod, Attention):
            projs = (mod.to_q, mod.to_k)
        elif isinstance(mod, CLIPAttention):
            projs = (mod.q_proj, mod.k_proj)
        else:
            continue
        for lin in projs:
            lin.weight.mul_(gain)
            if lin.bias is not None:
                lin.bias.mul_(gain)


def build_pipeline(name: str, spec: dict, tok_dirs: dict) -> StableDiffusionXLPipeline:
    torch.manual_seed(spec["seed"])
    gen = torch.Generator("cpu").manual_seed(spec["seed"] + 1)
    unet = UNet2DConditionModel(**spec["unet"])
    vae = AutoencoderKL(**spec["vae"])
    text_encoder = CLIPTextModel(clip_config(spec["text_encoder"]))
    text_encoder_2 = CLIPTextModelWithProjection(clip_config(spec["text_encoder_2"]))
    for m in (unet, vae, text_encoder, text_encoder_2):
        perturb(m, gen)
        m.eval()
    sharpen_attention(unet, QK_GAIN["unet"])
    sharpen_attention(vae, QK_GAIN["vae"])
    sharpen_attention(text_encoder, QK_GAIN["clip"])
    sharpen_attention(text_encoder_2, QK_GAIN["clip"])
    with torch.no_grad():
        unet.conv_out.weight.mul_(UNET_OUT_GAIN)
        unet.conv_out.bias.mul_(UNET_OUT_GAIN)
    scheduler = EulerDiscreteScheduler.from_config({**SDXL_SCHEDULER_CONFIG, **spec["scheduler"]})
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(tok_dirs["<|endoftext|>"]),
        tokenizer_2=CLIPTokenizer.from_pretrained(tok_dirs["!"]),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=spec["force_zeros_for_empty_prompt"],
        add_watermarker=False,
    )


def save_pipeline(pipe: StableDiffusionXLPipeline, d: Path, spec: dict, vocab_json: bytes, merges_txt: bytes) -> None:
    if d.exists():
        shutil.rmtree(d)
    variant = spec["variant"]
    if variant == "fp16":
        pipe.to(torch.float16)
    pipe.save_pretrained(d, safe_serialization=True, variant=variant)
    if spec["unet_max_shard_size"]:
        shutil.rmtree(d / "unet")
        pipe.unet.save_pretrained(
            d / "unet", safe_serialization=True, variant=variant, max_shard_size=spec["unet_max_shard_size"]
        )
    # Tokenizer and scheduler folders exactly like SDXL base's (save_pretrained would write the
    # transformers-4.57 flavour of tokenizer_config.json and the newer scheduler keys).
    write_tokenizer_dir(d / "tokenizer", vocab_json, merges_txt, "<|endoftext|>")
    write_tokenizer_dir(d / "tokenizer_2", vocab_json, merges_txt, "!")
    write_json(d / "scheduler" / "scheduler_config.json", {**SDXL_SCHEDULER_CONFIG, **spec["scheduler"]}, indent=2)
    model_index = json.loads((d / "model_index.json").read_text())
    assert model_index["force_zeros_for_empty_prompt"] == spec["force_zeros_for_empty_prompt"]
    assert model_index["tokenizer"] == ["transformers", "CLIPTokenizer"], model_index["tokenizer"]


def load_pipeline(d: Path, spec: dict) -> StableDiffusionXLPipeline:
    kw = {"variant": spec["variant"]} if spec["variant"] else {}
    pipe = StableDiffusionXLPipeline.from_pretrained(d, torch_dtype=torch.float32, add_watermarker=False, **kw)
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        assert all(p.dtype == torch.float32 for p in m.parameters())
    assert isinstance(pipe.tokenizer, CLIPTokenizer) and isinstance(pipe.tokenizer_2, CLIPTokenizer)
    assert pipe.tokenizer.pad_token == "<|endoftext|>" and pipe.tokenizer_2.pad_token == "!"
    assert pipe.watermark is None
    return pipe


# --------------------------------------------------------------------------------------------
# 3. Reference runs
# --------------------------------------------------------------------------------------------


def reference_cases():
    cases = []
    for model, spec in MODEL_SPECS.items():
        for sched in ("euler", "ddim"):
            for guidance in (1.0, 5.0):
                for w, h in spec["sizes"]:
                    cases.append(
                        dict(
                            model=model,
                            scheduler=sched,
                            width=w,
                            height=h,
                            guidance=guidance,
                            negative_prompt=NEGATIVE if guidance > 1 else None,
                        )
                    )
        w, h = spec["sizes"][0]
        # negative_prompt=None is what force_zeros_for_empty_prompt keys on (diffusers tests
        # `negative_prompt is None`, not emptiness): zeros on a, the encoded "" on b.
        cases.append(dict(model=model, scheduler="euler", width=w, height=h, guidance=5.0, negative_prompt=None))
        if spec["force_zeros_for_empty_prompt"]:
            # An explicit "" is encoded like any prompt, even when force_zeros_for_empty_prompt is set.
            cases.append(dict(model=model, scheduler="euler", width=w, height=h, guidance=5.0, negative_prompt=""))
    for i, c in enumerate(cases):
        g = "cfg5" if c["guidance"] > 1 else "nocfg"
        if c["guidance"] > 1 and c["negative_prompt"] is None:
            g += "-negnone"
        elif c["guidance"] > 1 and c["negative_prompt"] == "":
            g += "-negempty"
        c["name"] = f"{c['model'].removeprefix('tiny-sdxl-')}-{c['scheduler']}-{g}-{c['width']}x{c['height']}"
        c["seed"] = 1000 + i
    return cases


def run_case(pipe: StableDiffusionXLPipeline, base_cfg, case: dict, ref_dir: Path) -> dict:
    if case["scheduler"] == "euler":
        pipe.scheduler = EulerDiscreteScheduler.from_config(base_cfg)
    else:
        pipe.scheduler = DDIMScheduler.from_config(base_cfg)
    f = pipe.vae_scale_factor
    w, h = case["width"], case["height"]
    levels = len(pipe.unet.config.block_out_channels)
    assert (h // f) % 2 ** (levels - 1) == 0 and (w // f) % 2 ** (levels - 1) == 0
    latents = seeded_randn((1, 4, h // f, w // f), case["seed"])
    guided = case["guidance"] > 1.0

    captured = {}

    def hook(_module, args, kwargs, output):
        if "unet_out_0" in captured:
            return
        captured["unet_in_0"] = args[0].detach().clone()
        captured["t_0"] = torch.as_tensor(args[1]).detach().reshape(1).to(torch.float32).clone()
        captured["encoder_hidden_states"] = kwargs["encoder_hidden_states"].detach().clone()
        captured["text_embeds"] = kwargs["added_cond_kwargs"]["text_embeds"].detach().clone()
        captured["time_ids"] = kwargs["added_cond_kwargs"]["time_ids"].detach().clone()
        out = output[0] if isinstance(output, tuple) else output.sample
        captured["unet_out_0"] = out.detach().clone()

    final = {}

    def on_step_end(_pipe, i, _t, kw):
        if i == STEPS - 1:
            final["latents_final"] = kw["latents"].detach().clone()
        return {}

    handle = pipe.unet.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            image = pipe(
                prompt=PROMPT,
                negative_prompt=case["negative_prompt"],
                width=w,
                height=h,
                num_inference_steps=STEPS,
                guidance_scale=case["guidance"],
                latents=latents.clone(),
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            ).images[0]
    finally:
        handle.remove()
    timesteps = pipe.scheduler.timesteps.tolist()

    with torch.no_grad():
        pe, npe, ppe, nppe = pipe.encode_prompt(
            prompt=PROMPT,
            device=torch.device("cpu"),
            num_images_per_prompt=1,
            do_classifier_free_guidance=guided,
            negative_prompt=case["negative_prompt"],
        )
    add_time_ids = pipe._get_add_time_ids(
        (h, w), (0, 0), (h, w), dtype=torch.float32,
        text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim,
    )
    # The encode_prompt call above must reproduce what the UNet saw inside the pipeline.
    if guided:
        assert torch.equal(captured["encoder_hidden_states"], torch.cat([npe, pe])), case["name"]
        assert torch.equal(captured["text_embeds"], torch.cat([nppe, ppe])), case["name"]
        assert torch.equal(captured["time_ids"], torch.cat([add_time_ids, add_time_ids]))
    else:
        assert torch.equal(captured["encoder_hidden_states"], pe), case["name"]
        assert torch.equal(captured["text_embeds"], ppe), case["name"]
        assert torch.equal(captured["time_ids"], add_time_ids)
    negative_zeroed = guided and case["negative_prompt"] is None and pipe.config.force_zeros_for_empty_prompt
    if negative_zeroed:
        assert not npe.any() and not nppe.any()

    tensors = {
        "latents": latents,
        "prompt_embeds": pe,
        "pooled_prompt_embeds": ppe,
        "add_time_ids": add_time_ids,
        "unet_in_0": captured["unet_in_0"],
        "t_0": captured["t_0"],
        "unet_out_0": captured["unet_out_0"],
        "latents_final": final["latents_final"],
        "image": torch.from_numpy(np.ascontiguousarray(image)),
    }
    if guided:
        tensors["negative_prompt_embeds"] = npe
        tensors["negative_pooled_prompt_embeds"] = nppe
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    file = case["name"] + ".safetensors"
    save_file(tensors, ref_dir / file)

    img = tensors["image"]
    stats = dict(min=float(img.min()), max=float(img.max()), mean=float(img.mean()), std=float(img.std()),
                 clipped=float(((img <= 0) | (img >= 1)).float().mean()))
    print(f"  {case['name']}: image min {stats['min']:.3f} max {stats['max']:.3f} mean {stats['mean']:.3f} "
          f"std {stats['std']:.3f} clipped {stats['clipped']:.1%}; t {timesteps}")
    assert stats["std"] > 0.02 and stats["clipped"] < 0.5, f"degenerate image in {case['name']}: {stats}"

    def ids(tok, text):
        return tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids

    neg_tokenized = guided and not negative_zeroed
    neg_text = case["negative_prompt"] or ""
    return {
        "name": case["name"],
        "model": case["model"],
        "scheduler": case["scheduler"],
        "width": w,
        "height": h,
        "steps": STEPS,
        "guidance": case["guidance"],
        "prompt": PROMPT,
        "negative_prompt": case["negative_prompt"],
        "negative_zeroed": negative_zeroed,
        "seed": case["seed"],
        "file": file,
        "timesteps": timesteps,
        "input_ids": ids(pipe.tokenizer, PROMPT),
        "input_ids_2": ids(pipe.tokenizer_2, PROMPT),
        "negative_input_ids": ids(pipe.tokenizer, neg_text) if neg_tokenized else None,
        "negative_input_ids_2": ids(pipe.tokenizer_2, neg_text) if neg_tokenized else None,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }


# --------------------------------------------------------------------------------------------
# 4. Scheduler schedules and step examples
# --------------------------------------------------------------------------------------------

SCHEDULERS = {
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "ddim": DDIMScheduler,
}


def make_schedules(ref_dir: Path) -> None:
    base = {k: v for k, v in SDXL_SCHEDULER_CONFIG.items() if not k.startswith("_")}
    alphas_cumprod = EulerDiscreteScheduler.from_config(base).alphas_cumprod
    assert torch.equal(alphas_cumprod, DDIMScheduler.from_config(base).alphas_cumprod)
    schedules = []
    for name, cls in SCHEDULERS.items():
        for spacing in ("leading", "linspace", "trailing"):
            for offset in (0, 1):
                for steps in (1, 4, 30):
                    overrides = {"timestep_spacing": spacing, "steps_offset": offset}
                    s = cls.from_config({**base, **overrides})
                    s.set_timesteps(steps)
                    entry = {
                        "scheduler": name,
                        "config": overrides,
                        "steps": steps,
                        "timesteps": [f32(t) if s.timesteps.is_floating_point() else int(t) for t in s.timesteps.tolist()],
                        "init_noise_sigma": f32(s.init_noise_sigma),
                    }
                    if hasattr(s, "sigmas"):
                        entry["sigmas"] = f32_list(s.sigmas)
                    if name == "ddim":
                        entry["final_alpha_cumprod"] = f32(s.final_alpha_cumprod)
                    schedules.append(entry)

    examples = []
    for name in ("euler", "ddim"):
        cls = SCHEDULERS[name]
        for pred in ("epsilon", "v_prediction"):
            for spacing in ("leading", "trailing"):
                overrides = {"prediction_type": pred, "timestep_spacing": spacing}
                s = cls.from_config({**base, **overrides})
                s.set_timesteps(STEPS)
                sample = seeded_randn((1, 4, 2, 2), 42) * s.init_noise_sigma
                steps = []
                for i, t in enumerate(s.timesteps):
                    model_output = seeded_randn((1, 4, 2, 2), 100 + i)
                    scaled = s.scale_model_input(sample, t)
                    kw = {"eta": 0.0} if name == "ddim" else {}
                    prev = s.step(model_output, t, sample, return_dict=False, **kw)[0]
                    rec = {
                        "index": i,
                        "timestep": f32(t) if t.is_floating_point() else int(t),
                        "sample": f32_list(sample),
                        "scaled_model_input": f32_list(scaled),
                        "model_output": f32_list(model_output),
                        "prev_sample": f32_list(prev),
                    }
                    if name == "euler":
                        rec["sigma"] = f32(s.sigmas[i])
                        rec["sigma_next"] = f32(s.sigmas[i + 1])
                    steps.append(rec)
                    sample = prev
                examples.append(
                    {
                        "scheduler": name,
                        "config": overrides,
                        "steps": STEPS,
                        "shape": [1, 4, 2, 2],
                        "init_noise_sigma": f32(s.init_noise_sigma),
                        "timesteps": [f32(t) if s.timesteps.is_floating_point() else int(t) for t in s.timesteps.tolist()],
                        "step_records": steps,
                    }
                )

    out = {
        "base_config": SDXL_SCHEDULER_CONFIG,
        "alphas_cumprod": f32_list(alphas_cumprod),
        "schedules": schedules,
        "step_examples": examples,
    }
    with open(ref_dir / "schedules.json", "w", encoding="utf-8") as f:
        f.write("{\n")
        parts = [
            f'"base_config":{json.dumps(out["base_config"], separators=(",", ":"))}',
            f'"alphas_cumprod":{json.dumps(out["alphas_cumprod"])}',
            '"schedules":[\n' + ",\n".join(json.dumps(e, separators=(",", ":")) for e in schedules) + "\n]",
            '"step_examples":[\n' + ",\n".join(json.dumps(e, separators=(",", ":")) for e in examples) + "\n]",
        ]
        f.write(",\n".join(parts))
        f.write("\n}\n")
    print(f"schedules: {len(schedules)} schedules, {len(examples)} step examples")


# --------------------------------------------------------------------------------------------


def make_vae_tiled(pipe: StableDiffusionXLPipeline, ref_dir: Path) -> None:
    """diffusers' tiled VAE decode on tiny-sdxl-a with 32-pixel tiles (16 latents, 4 overlap), a latent of
    3 × 4 tiles whose last row and column are partial, against the same latent decoded whole."""
    vae = pipe.vae
    latents = seeded_randn((1, 4, 40, 56), 4242)
    with torch.no_grad():
        whole = vae.decode(latents, return_dict=False)[0]
        vae.enable_tiling()
        vae.tile_sample_min_size = 32
        vae.tile_latent_min_size = 16
        tiled = vae.decode(latents, return_dict=False)[0]
        vae.disable_tiling()
    save_file(
        {"latents": latents.contiguous(), "whole": whole.contiguous(), "tiled": tiled.contiguous()},
        str(ref_dir / "vae-tiled-a.safetensors"),
    )
    print(f"vae tiled: {tuple(tiled.shape)}, max |tiled - whole| {float((tiled - whole).abs().max()):.4f}")


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpe", required=True, type=Path, help="open_clip's bpe_simple_vocab_16e6.txt.gz")
    ap.add_argument("--out", required=True, type=Path, help="worker/tests/fixtures")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
          f"safetensors {safetensors.__version__}, numpy {np.__version__}; ftfy absent")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdxl-ref-") as tmp_s:
        tmp = Path(tmp_s)
        make_tokenizer_fixtures(args.bpe, out, tmp)

        _, vocab_json, merges_txt = build_bpe(args.bpe, 1000)
        tok_dirs = {}
        for pad in ("<|endoftext|>", "!"):
            td = tmp / ("tok-tiny-" + ("eot" if pad != "!" else "bang"))
            write_tokenizer_dir(td, vocab_json, merges_txt, pad)
            tok_dirs[pad] = td
        tiny_vocab = json.loads(vocab_json)
        assert len(tiny_vocab) == TINY_VOCAB and tiny_vocab["<|endoftext|>"] == 1513 and tiny_vocab["!"] == 0

        ref_dir = out / "reference"
        if ref_dir.exists():
            shutil.rmtree(ref_dir)
        ref_dir.mkdir(parents=True)

        for name, spec in MODEL_SPECS.items():
            pipe = build_pipeline(name, spec, tok_dirs)
            save_pipeline(pipe, out / name, spec, vocab_json, merges_txt)
            del pipe
            print(f"{name}: saved")

        results = []
        all_cases = reference_cases()
        for name, spec in MODEL_SPECS.items():
            pipe = load_pipeline(out / name, spec)
            base_cfg = pipe.scheduler.config  # as loaded from scheduler/scheduler_config.json
            print(f"{name}: reference runs (vae scale factor {pipe.vae_scale_factor})")
            for case in all_cases:
                if case["model"] == name:
                    results.append(run_case(pipe, base_cfg, case, ref_dir))
            if name == "tiny-sdxl-a":
                make_vae_tiled(pipe, ref_dir)
            del pipe
        with open(ref_dir / "cases.json", "w", encoding="utf-8") as f:
            f.write("[\n")
            f.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in results))
            f.write("\n]\n")

        make_schedules(ref_dir)

    (out / "reference" / "README.md").write_text(
        "Generated by tools/sdxl-reference/run.sh (make_fixtures.py) together with ../tokenizer-full,\n"
        "../tiny-sdxl-a and ../tiny-sdxl-b. Do not edit by hand: rerun the script. Layout, tensor names\n"
        "and the diffusers/transformers versions used: tools/sdxl-reference/README.md.\n"
    )
    for name in ("tokenizer-full", "tiny-sdxl-a", "tiny-sdxl-b", "reference"):
        for f in (out / name).rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)

    print("\nsizes on disk:")
    total = 0
    for p in sorted(out.iterdir()):
        if p.is_dir() and p.name in ("tokenizer-full", "tiny-sdxl-a", "tiny-sdxl-b", "reference"):
            s = dir_size(p)
            total += s
            print(f"  {p.name + '/':<16} {s / 1e6:8.3f} MB")
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.stat().st_size > 100_000:
                    print(f"      {str(f.relative_to(p)):<60} {f.stat().st_size / 1e6:8.3f} MB")
    print(f"  {'total':<16} {total / 1e6:8.3f} MB")


if __name__ == "__main__":
    main()
