"""One adapter, every layout: an adapter saved under the module names of the original nanoLLaVA, or of transformers
4.45, 4.52-4.57 or 5, loads on the installed transformers and gives the logits of the same adapter saved under the
installed model's own names (fp32, 1e-5). Each layout is made from the library's own save (peft's `save_pretrained`,
the pyreft folder writer, safetensors for full weights) followed by a rename of the names."""

import functools
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from peft import IA3Config, LoraConfig, get_peft_model
from PIL import Image
from safetensors.torch import load_file, save_file

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.layouts import (
    LAYOUTS,
    ORIGINAL,
    TRANSFORMERS_4_45,
    TRANSFORMERS_5,
    LayoutError,
    detect_layout,
    native_layout,
    native_modules,
    rename,
    to_native,
)
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.runner import Runner

from .adapter_factory import lora_model

TOL = 1e-5
PEFT_KEY = "base_model.model."
PROMPTS = ["How many black squares are in the image?", "Which object is closer to the camera?"]
LAYOUT_IDS = ["original", "tf4.45", "tf4.52", "tf5"]
LAYOUT_PARAMS = pytest.mark.parametrize("layout", [ORIGINAL, *LAYOUTS[:3]], ids=LAYOUT_IDS)


def fresh_model():
    return load_nanollava("nanollava-tiny", device="cpu", dtype="float32").model


@pytest.fixture(scope="module")
def native():
    return native_layout(fresh_model())


def logits_with(folder: Path | None) -> torch.Tensor:
    """Logits of a left-padded batch of two image prompts through vlreft's own path, with the adapter attached."""
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")
    attached = attach_adapter(loaded.model, str(folder)) if folder else None
    generator = Runner(attached.model if attached else loaded.model, loaded.processor, torch.device("cpu"),
                          attached)
    images = [Image.new("RGB", (64 + 9 * i, 64), (40 * i, 200, 90)) for i in range(len(PROMPTS))]
    inputs, lengths = generator.inputs(PROMPTS, images)
    with torch.no_grad():
        logits = generator.logits(inputs, lengths)
    return logits[inputs["attention_mask"].bool()]


def assert_same_logits(folder: Path, reference: Path) -> None:
    got, expected = logits_with(folder), logits_with(reference)
    assert (got - expected).abs().max() < TOL
    assert (expected - bare_logits()).abs().max() > 1e-3, "the adapter must change the logits"


@functools.cache
def bare_logits() -> torch.Tensor:
    return logits_with(None)


def relayout_peft(src: Path, dest: Path, native, layout, target_modules=None) -> Path:
    """A copy of a peft adapter folder with its module names (keys, full-name `modules_to_save`) in `layout`."""
    dest.mkdir(parents=True)
    config = json.loads((src / "adapter_config.json").read_text())
    if target_modules is not None:
        config["target_modules"] = target_modules
    if config.get("modules_to_save"):
        config["modules_to_save"] = [rename(m, native, layout) for m in config["modules_to_save"]]
    (dest / "adapter_config.json").write_text(json.dumps(config))
    state = load_file(str(src / "adapter_model.safetensors"))
    save_file({PEFT_KEY + rename(k[len(PEFT_KEY):], native, layout): v for k, v in state.items()},
              str(dest / "adapter_model.safetensors"))
    return dest


def text_attention_regex(layout) -> str:
    """target_modules as a regex written for one layout: the language model's q/v projections only."""
    return re.escape(layout.text) + r"\.layers\.\d+\.self_attn\.(q_proj|v_proj)"


def perturb(peft_model, needle: str, mean: float = 0.0) -> None:
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if needle in name:
                p.normal_(mean, 0.3)


def saved_peft(peft_model, folder: Path) -> Path:
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    return folder


def make_peft(kind: str, folder: Path, native) -> Path:
    torch.manual_seed(0)
    if kind == "lora":
        return saved_peft(lora_model(), folder)
    if kind == "lora-text-regex":
        config = LoraConfig(r=4, lora_alpha=8, target_modules=text_attention_regex(native), init_lora_weights=False)
    elif kind == "dora":
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "fc1", "linear_2"], use_dora=True,
                            init_lora_weights=False)
    elif kind == "ia3":
        config = IA3Config(target_modules=["k_proj", "v_proj", "down_proj", "fc2"], feedforward_modules=["down_proj",
                                                                                                         "fc2"])
    elif kind == "lora-modules-to-save":  # the projector and the LM head trained whole, saved under their full names
        saved = [native.projector, native.lm_head]
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj"], modules_to_save=saved,
                            init_lora_weights=False, rank_pattern={"o_proj": 2}, alpha_pattern={"o_proj": 3})
    model = get_peft_model(fresh_model(), config)
    perturb(model, "ia3_l", mean=1.0)
    perturb(model, "modules_to_save")
    return saved_peft(model, folder)


PEFT_KINDS = ["lora", "lora-text-regex", "dora", "ia3", "lora-modules-to-save"]


@pytest.mark.parametrize("kind", PEFT_KINDS)
@LAYOUT_PARAMS
def test_peft_adapter_in_any_layout(tmp_path, native, kind, layout):
    reference = make_peft(kind, tmp_path / "native", native)
    regex = text_attention_regex(layout) if kind == "lora-text-regex" else None
    folder = relayout_peft(reference, tmp_path / "relayout", native, layout, target_modules=regex)
    assert_same_logits(folder, reference)


@LAYOUT_PARAMS
def test_pt_lora_in_any_layout(tmp_path, native, layout):
    """PT-PEFT: the prefix has no module names; the LoRA behind it is renamed."""
    from vlm_peft_bench.adapters.prefix import PrefixModel, save_prefix

    reference = tmp_path / "native"
    torch.manual_seed(1)
    save_prefix(reference / "prefix", PrefixModel(fresh_model(), 4, init=0.5 * torch.randn(4, 4 * 2 * 128)))
    saved_peft(lora_model(seed=2), reference / "lora")
    folder = tmp_path / "relayout"
    shutil.copytree(reference / "prefix", folder / "prefix")
    relayout_peft(reference / "lora", folder / "lora", native, layout)
    assert_same_logits(folder, reference)


@LAYOUT_PARAMS
def test_full_weights_in_any_layout(tmp_path, native, layout):
    model = fresh_model()
    torch.manual_seed(3)
    keep = (native.text, native.lm_head, native.projector)
    state = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters() if n.startswith(keep)}
    for name, state_ in (("native", state), ("relayout", {rename(k, native, layout): v for k, v in state.items()})):
        (tmp_path / name).mkdir()
        save_file(state_, str(tmp_path / name / "model.safetensors"))
        model.config.to_json_file(str(tmp_path / name / "config.json"))
    assert_same_logits(tmp_path / "relayout", tmp_path / "native")


@LAYOUT_PARAMS
def test_reft_in_any_layout(tmp_path, layout):
    from .adapter_factory import reft_interventions, save_reft

    reference = save_reft(reft_interventions(layers=(0, 2, 3)), tmp_path / "native")
    folder = tmp_path / "relayout"
    shutil.copytree(reference, folder)
    config = json.loads((folder / "config.json").read_text())
    for rep in config["representations"]:
        prefix = rep[1][:rep[1].index("layers[")]
        rep[1] = rep[1].replace(prefix, layout.text + ".")
    old, new = prefix.replace(".", "_"), (layout.text + ".").replace(".", "_")
    config["sorted_keys"] = [k.replace(old, new) for k in config["sorted_keys"]]
    (folder / "config.json").write_text(json.dumps(config))
    for path in folder.glob("intkey_*.bin"):
        path.rename(folder / path.name.replace(old, new))
    assert_same_logits(folder, reference)


def test_adapter_for_another_base_is_refused(tmp_path, native):
    """Keys that fit no layout: the error names the first such module and every layout tried."""
    reference = saved_peft(lora_model(), tmp_path / "native")
    state = load_file(str(reference / "adapter_model.safetensors"))
    foreign = {k.replace(native.text + ".", "gpt_neox.").replace(native.vision + ".", "vit."): v
               for k, v in state.items()}
    save_file(foreign, str(reference / "adapter_model.safetensors"))
    first = next(iter(load_file(str(reference / "adapter_model.safetensors"))))[len(PEFT_KEY):].split(".lora_")[0]
    tried = r".*".join(re.escape(layout.name) for layout in [native] + [x for x in LAYOUTS if x != native])
    with pytest.raises(AdapterError, match=rf"{re.escape(repr(first))} is no module of nanoLLaVA.*tried: {tried}"):
        attach_adapter(fresh_model(), str(reference))


def test_full_weights_for_another_base_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_file({"transformer.h.0.attn.c_attn.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(AdapterError, match=r"'transformer\.h\.0\.attn\.c_attn\.weight' is no module of nanoLLaVA"):
        attach_adapter(fresh_model(), str(tmp_path))


def test_reft_component_for_another_base_is_refused(tmp_path):
    from vlm_peft_bench.adapters.reft_folder import read_reft_config

    config = {"representations": [[0, "gpt_neox.layers[0].output", "pos", 1, 4]],
              "intervention_types": ["<class 'pyreft.interventions.LoreftIntervention'>"],
              "intervention_dimensions": [128], "sorted_keys": ["comp_gpt_neox_layers[0]_output_unit_pos_nunit_1#0"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"'gpt_neox\.layers\[0\]\.output'.*no module of nanoLLaVA.*tried"):
        read_reft_config(tmp_path)
    config["representations"][0][1] = "model.vision_tower.encoder.layers[0].output"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match="not a layer of the language model"):
        read_reft_config(tmp_path)


def test_the_installed_model_has_a_known_layout():
    model = fresh_model()
    layout = native_layout(model)
    assert layout in (TRANSFORMERS_4_45, TRANSFORMERS_5), f"{layout}: a transformers release with new names?"
    assert {c: getattr(layout, c) for c in ("text", "lm_head", "vision", "projector")} == native_modules(model)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["tf4.45", "tf4.52", "tf5", "original"])
def test_every_parameter_name_round_trips_through_every_layout(native, layout):
    names = [n for n, _ in fresh_model().named_parameters()]
    renamed = [rename(n, native, layout) for n in names]
    found = detect_layout(renamed)
    assert [rename(n, found, native) for n in renamed] == names
    assert to_native(renamed, fresh_model())[1] == dict(zip(renamed, names))
    if layout == ORIGINAL:
        assert "model.mm_projector.2.weight" in renamed and "model.layers.0.self_attn.q_proj.bias" in renamed


def test_mixed_layouts_are_refused():
    with pytest.raises(LayoutError, match="mix several"):
        detect_layout(["language_model.model.layers.0.mlp.up_proj.weight", "model.language_model.norm.weight",
                       "model.vision_tower.vision_model.post_layernorm.weight", "model.vision_tower.encoder.layers.0"])


@LAYOUT_PARAMS
def test_inspect_reads_the_layout_and_says_vlreft_loads_it(tmp_path, layout, native):
    """`inspect` runs the loader's own checks, renaming included: an adapter in any layout is reported as loadable."""
    from vlm_peft_bench.methods.inspect import inspect_adapter

    reference = saved_peft(lora_model(), tmp_path / "native")
    folder = relayout_peft(reference, tmp_path / "relayout", native, layout,
                           target_modules=text_attention_regex(layout))
    report = inspect_adapter(str(folder), base="nanollava-tiny")
    assert report["layout"] in (layout.key, "transformers-4.52+")
    tiny = next(b for b in report["bases"] if b["base"] == "nanollava-tiny")
    assert tiny["loads"], tiny["problem"]
