"""Benchmark 1: what RepCali costs: training-step time, peak memory and generation time, calib=on vs off.

Peak memory = tensor bytes resident before the step (parameters, buffers, optimizer state) plus
the peak increase during one step: ``torch.cuda.max_memory_allocated`` on GPU, the profiler's
allocator records on CPU (``measure.cpu_peak_tensor_bytes``). Both variants live on the device
at once (they are interleaved), so the increase, not the absolute allocator peak, is what counts.

The block is O(b·n·d) against the model's O(L·b·n·d²) per step: the overhead should shrink with
model size. On a tiny model its fixed per-step cost (a few small kernels, a hook) shows.
"""

from __future__ import annotations

import copy
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import ROOT, cpu_peak_tensor_bytes, interleave, paired_ratio, summarize, tensor_bytes, timed
from repcali.calibration import attach_repcali, find_block

TITLE = "Calibration overhead: calib=on vs off, same backbone, batch and lengths"
METHOD = """
Both variants are the same backbone (one random initialisation, copied; the published configs of
the paper's backbones, built without downloading weights), the same batch and sequence lengths;
``on`` has the block attached. A training step is forward, backward, AdamW step and zero_grad,
under bf16 autocast on GPU (what ``precision=bf16`` does). Generation is beam search with a
fixed output length (min = max new tokens), so both variants decode the same number of steps.
"""

TARGET_STEP_PCT = 2.0
TARGET_MEMORY_PCT = 1.0
# The published shapes of the paper's backbones: family, d_model, layers per stack, heads, feed-forward width.
BACKBONES: dict[str, tuple[str, int, int, int, int]] = {
    "bart_base": ("bart", 768, 6, 12, 3072),
    "bart_large": ("bart", 1024, 12, 16, 4096),
    "t5_base": ("t5", 768, 12, 12, 3072),
    "t5_large": ("t5", 1024, 24, 16, 4096),
}


@dataclass(frozen=True)
class Setting:
    backbone: str  # tiny_t5 (the embedded default, assets/tiny-t5) or a key of BACKBONES
    batch: int
    source_length: int
    target_length: int
    new_tokens: int  # generated tokens per sequence (beam search, 4 beams), fixed
    steps_per_sample: int  # training steps timed together as one sample
    rounds: int


SETTINGS: dict[tuple[str, str], list[Setting]] = {
    ("smoke", "cpu"): [Setting("tiny_t5", 4, 32, 8, 4, 1, 2)],
    ("quick", "cpu"): [Setting("tiny_t5", 16, 128, 64, 32, 3, 8), Setting("bart_base", 2, 64, 16, 8, 1, 5)],
    ("full", "cpu"): [
        Setting("tiny_t5", 16, 128, 64, 32, 10, 30),
        Setting("bart_base", 4, 256, 64, 16, 1, 10),
        Setting("t5_base", 4, 256, 64, 16, 1, 10),
    ],
    ("quick", "cuda"): [Setting("bart_base", 32, 512, 128, 64, 5, 10), Setting("t5_base", 32, 512, 128, 64, 5, 10)],
    ("full", "cuda"): [
        Setting("bart_base", 32, 512, 128, 64, 8, 15),
        Setting("t5_base", 32, 512, 128, 64, 8, 15),
        Setting("bart_large", 16, 512, 128, 64, 8, 15),
        Setting("t5_large", 16, 512, 128, 64, 8, 15),
    ],
}
SETTINGS[("smoke", "cuda")] = SETTINGS[("smoke", "cpu")]


def backbone_config(name: str):
    """tiny_t5 (the embedded default, assets/tiny-t5) or a published shape of BACKBONES; weights stay random."""
    from transformers import AutoConfig, BartConfig, T5Config

    if name == "tiny_t5":
        return AutoConfig.from_pretrained(ROOT / "assets" / "tiny-t5")
    family, width, layers, heads, ffn = BACKBONES[name]
    if family == "bart":
        return BartConfig(
            d_model=width,
            encoder_layers=layers,
            decoder_layers=layers,
            encoder_attention_heads=heads,
            decoder_attention_heads=heads,
            encoder_ffn_dim=ffn,
            decoder_ffn_dim=ffn,
        )
    return T5Config(
        vocab_size=32128,
        d_model=width,
        d_kv=64,
        d_ff=ffn,
        num_layers=layers,
        num_heads=heads,
        decoder_start_token_id=0,
    )


def build_backbone(name: str, device: str):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    with torch.device(device):  # initialise where it will run: seconds, not a minute, for large models on GPU
        return AutoModelForSeq2SeqLM.from_config(backbone_config(name))


class Variant:
    """A model, its optimizer and a fixed batch: one side of the comparison."""

    def __init__(self, model, batch: dict, device: str) -> None:
        import torch

        self.model = model.to(device).train()
        self.batch = batch
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        self.autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step(self) -> None:
        with self.autocast:
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def generate(self, new_tokens: int) -> None:
        self.model.eval()
        with self.autocast:
            self.model.generate(
                input_ids=self.batch["input_ids"],
                attention_mask=self.batch["attention_mask"],
                num_beams=4,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
            )
        self.model.train()

    def resident_bytes(self) -> int:
        state = [t for s in self.optimizer.state.values() for t in s.values() if hasattr(t, "element_size")]
        return tensor_bytes([*self.model.parameters(), *self.model.buffers(), *state])


def random_batch(model, setting: Setting, device: str) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    size = (setting.batch, setting.source_length)
    input_ids = torch.randint(3, vocab, size, generator=generator)
    labels = torch.randint(3, vocab, (setting.batch, setting.target_length), generator=generator)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return {key: value.to(device) for key, value in batch.items()}


def peak_bytes(variant: Variant, device: str) -> int:
    """Resident tensors plus the peak increase during one training step (see the module docstring)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        variant.step()
        torch.cuda.synchronize()
        increase = torch.cuda.max_memory_allocated() - before
    else:
        increase = cpu_peak_tensor_bytes(variant.step)
    return variant.resident_bytes() + increase


def block_seconds(variant: Variant, setting: Setting, synchronize, repeats: int = 20) -> float:
    """The block alone, forward and backward on encoder states of the setting's shape: its share of a step.

    The paired step comparison cannot resolve an effect smaller than the machine's noise; this
    times exactly what calib=on adds to a step, minus the hook call and the block's AdamW update.
    """
    import torch

    block = find_block(variant.model)
    h = torch.randn(
        setting.batch,
        setting.source_length,
        block.learn_emb.embedding_dim,
        requires_grad=True,
        device=block.learn_emb.weight.device,
    )

    def forward_backward() -> None:
        with variant.autocast:
            out = block(h)
        out.backward(torch.ones_like(out))

    forward_backward()  # warm-up
    seconds = timed(lambda: [forward_backward() for _ in range(repeats)], synchronize) / repeats
    block.zero_grad(set_to_none=True)  # leave no gradient behind for the next training step
    return seconds


def measure_setting(setting: Setting, device: str) -> dict[str, Any]:
    import torch

    from repcali.modeling import count_parameters

    torch.manual_seed(0)
    baseline = build_backbone(setting.backbone, device)
    calibrated = copy.deepcopy(baseline)
    attach_repcali(calibrated, None)
    batch = random_batch(baseline, setting, device)
    variants = {"off": Variant(baseline, batch, device), "on": Variant(calibrated, batch, device)}
    synchronize = torch.cuda.synchronize if device == "cuda" else lambda: None

    for variant in variants.values():  # warm-up: optimizer state, first-touch page faults, kernels
        for _ in range(3):
            variant.step()
        variant.generate(2)
    memory = {name: peak_bytes(variant, device) for name, variant in variants.items()}

    def train_sample(variant: Variant):
        k = setting.steps_per_sample
        return lambda: timed(lambda: [variant.step() for _ in range(k)], synchronize) / k

    def generate_sample(variant: Variant):
        return lambda: timed(lambda: variant.generate(setting.new_tokens), synchronize)

    steps = interleave({name: train_sample(v) for name, v in variants.items()}, setting.rounds)
    generation = interleave({name: generate_sample(v) for name, v in variants.items()}, setting.rounds)
    block = [block_seconds(variants["on"], setting, synchronize) for _ in range(setting.rounds)]
    backbone_params = count_parameters(baseline)
    result = {
        "setting": asdict(setting),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else None,
        "dtype": "bf16 autocast" if device == "cuda" else "fp32",
        "params": {
            "backbone": backbone_params,
            "added": count_parameters(calibrated) - backbone_params,
            "added_pct": 100 * (count_parameters(calibrated) - backbone_params) / backbone_params,
        },
        "step_s": {name: summarize(samples) for name, samples in steps.items()},
        "step_ratio": paired_ratio(steps["on"], steps["off"]),
        "generate_s": {name: summarize(samples) for name, samples in generation.items()},
        "generate_ratio": paired_ratio(generation["on"], generation["off"]),
        "block_s": summarize(block),
        "block_share_of_step": statistics.median(block) / statistics.median(steps["off"]),
        "peak_memory_bytes": memory,
        "memory_ratio": memory["on"] / memory["off"],
    }
    del variants, baseline, calibrated
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def _change_pct(ratio: dict[str, Any]) -> dict[str, Any]:
    """Ratio statistics as a change in percent (on ÷ off = 1.02 is +2 %)."""
    return {**ratio, **{key: 100 * (ratio[key] - 1) for key in ("median", "q1", "q3")}}


def _ms(stats: dict[str, Any], fmt: str = ".1f") -> str:
    return f"{stats['median'] * 1e3:{fmt}} ms"


def rows(result: dict) -> list[Row]:
    """The summary's lines for one setting: step time, the block alone, memory, generation."""
    setting, device = result["setting"], result["device"]
    case = f"{setting['backbone']} ({result['params']['backbone'] / 1e6:.1f}M, {device}, {result['dtype']}), " + (
        f"batch {setting['batch']}×{setting['source_length']}→{setting['target_length']}"
    )
    step, generate, block = result["step_s"], result["generate_s"], result["block_s"]
    mib = {name: f"{value / 2**20:.1f} MiB" for name, value in result["peak_memory_bytes"].items()}
    memory = f"peak memory (block: +{result['params']['added_pct']:.2f} % parameters)"
    beams = f"generate (4 beams, {setting['new_tokens']} tokens)"
    block_share = f"{100 * result['block_share_of_step']:.3f} % of a calib=off step"
    step_cells = judged(_change_pct(result["step_ratio"]), "+.2f", " %", TARGET_STEP_PCT)
    memory_cells = judged(summarize([100 * (result["memory_ratio"] - 1)]), "+.2f", " %", TARGET_MEMORY_PCT)
    generate_cells = judged(_change_pct(result["generate_ratio"]), "+.2f", " %")
    return [
        Row(case, "training step", _ms(step["off"]), _ms(step["on"]), **step_cells),
        Row(case, "the block alone, forward + backward", _ms(step["off"]), _ms(block, ".3f"), block_share),
        Row(case, memory, mib["off"], mib["on"], **memory_cells),  # one measurement each: no IQR
        Row(case, beams, _ms(generate["off"]), _ms(generate["on"]), **generate_cells),
    ]


def run(mode: str, device: str) -> Benchmark:
    import torch

    torch.set_float32_matmul_precision("high")  # TF32 on GPU, as a user training there would have it
    results = []
    for setting in SETTINGS[(mode, device)]:
        results.append(measure_setting(setting, device))
        for row in rows(results[-1]):  # progress, so a run cut short still shows what it measured
            print(f"[calibration_overhead] {row.case}: {row.measure}: {row.result}", file=sys.stderr)
    return Benchmark(TITLE, METHOD, [row for result in results for row in rows(result)], results)
