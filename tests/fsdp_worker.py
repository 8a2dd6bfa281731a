"""Run by tests/test_sharding.py under torchrun (2 processes, gloo, CPU): the RepCali block under FSDP2.

accelerate turns FSDP on for GPU processes only, so on CPU this drives torch's own ``fully_shard`` as
accelerate's TRANSFORMER_BASED_WRAP policy does (each of the model's ``_no_split_modules`` blocks, then
the root) and exercises repcali's code on the sharded model: the hook, training, generation
(:func:`repcali.sharding.unsharded`) and saving from the gathered state (:func:`repcali.sharding.full_state_dict`).
Writes what it saw to ``argv[1]`` (first process).
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from repcali import RepCaliConfig, attach_repcali
from repcali.modeling import load_model, save_model
from repcali.sharding import full_state_dict, unsharded
from tests.grid import ROOT


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter as a full tensor: FSDP2 shards are DTensors; gathered ones (after a forward) are not."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def main(report: str, saved: str) -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(ROOT / "assets" / "tiny-t5"))
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-t5")
    seen = {}
    encoder = model.get_encoder()
    encoder.register_forward_hook(lambda m, a, out: seen.__setitem__("h", out["last_hidden_state"].detach().clone()))
    block = attach_repcali(model, RepCaliConfig(lam=0.5))  # its hook runs after the one above
    encoder.register_forward_hook(lambda m, a, out: seen.__setitem__("p", out["last_hidden_state"].detach().clone()))
    for module in model.modules():
        if type(module).__name__ in model._no_split_modules:
            fully_shard(module)
    fully_shard(model)

    shard_rows = block.learn_emb.weight.to_local().shape[0]
    norm_before = whole(block.norm.weight).clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    inputs = torch.randint(5, 100, (4, 12), generator=torch.Generator().manual_seed(dist.get_rank()))
    labels = torch.randint(5, 100, (4, 6), generator=torch.Generator().manual_seed(10 + dist.get_rank()))
    for _ in range(2):
        model(input_ids=inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model.eval()
    with torch.no_grad():
        model(input_ids=inputs, labels=labels)
        row, norm = whole(block.learn_emb.weight)[1], block.norm
        expected = torch.nn.functional.layer_norm(
            seen["h"] + 0.5 * row, row.shape, whole(norm.weight), whole(norm.bias), norm.eps
        )
        calibrated = torch.allclose(seen["p"], expected, atol=1e-5)
        with unsharded(model):
            generated = model.generate(input_ids=inputs, max_new_tokens=4, num_beams=2, synced_gpus=True)

    state = full_state_dict(model)  # a collective: every process calls it, the first gets the tensors
    if dist.get_rank() == 0:
        save_model(model, tokenizer, saved, state_dict=state)
        reloaded = load_model(saved).state_dict()
        seen_report = {
            "world_size": dist.get_world_size(),
            "shard_rows": shard_rows,
            "block_shapes": {k: list(v.shape) for k, v in state.items() if k.startswith("repcali.")},
            "calibrated": calibrated,
            "block_trained": not torch.equal(norm_before, state["repcali.norm.weight"]),
            "generated": list(generated.shape),
            "reloaded_equal": sorted(reloaded) == sorted(state)
            and all(torch.equal(reloaded[k], state[k]) for k in state),
        }
        Path(report).write_text(json.dumps(seen_report))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
