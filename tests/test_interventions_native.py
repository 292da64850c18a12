"""Our reimplementation of pyreft's interventions and of its saved folder (interventions.py, reft_files.py).

Tests that compare with pyreft itself skip, with the reason, where pyreft is not installed; the rest need neither
pyreft nor pyvene (one of them checks, in a subprocess where importing either fails, that evaluation and training
never import them).
"""

import filecmp
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from vlm_peft_bench.adapters import interventions as native
from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.reft_files import ReftEntry, layer_component, save_reft_folder
from vlm_peft_bench.adapters.reft_folder import build_intervention, frozen, load_intervention_state, read_reft_config
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.quiet import stdout_to_stderr

from .adapter_factory import HIDDEN, needs_pyreft, pyreft_model, reft_interventions
from .conftest import REPO

TYPES = sorted(native.INTERVENTIONS)
ZOO_REFT = REPO / "adapters_zoo" / "weights" / "reft-r4-all__nanollava-tiny__cvbench_mini"


def randomise(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Non-identity weights (the rotation stays orthonormal: its parametrisation is left alone)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "parametrizations" not in name:
                p.normal_(0, 0.3)
    return module


def assert_same_state(a: dict, b: dict):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


def logits_with(folder, batch, lengths):
    attached = attach_adapter(load_nanollava("nanollava-tiny").model, str(folder))
    with torch.no_grad(), attached.reft.intervene(batch["attention_mask"], lengths, first_forward_only=False):
        return attached.model(**batch).logits


def tiny_batch():
    from PIL import Image

    processor = load_nanollava("nanollava-tiny").processor
    prompts = ["How many black squares are in the image?", "Where is it?"]
    batch = processor(prompts, [Image.new("RGB", (64, 64), (30, 200, 90)), Image.new("RGB", (72, 64), "red")])
    lengths = [len(ids) for ids in processor.encode([processor.prompt(p) for p in prompts])]
    return batch, lengths


# --- against pyreft itself ---------------------------------------------------------------------------------------

def test_registry_holds_every_pyreft_intervention():
    pyreft = needs_pyreft()
    import pyvene

    shipped = {name for name, obj in vars(pyreft.interventions).items() if isinstance(obj, type)
               and issubclass(obj, pyvene.Intervention) and obj.__module__ == "pyreft.interventions"}
    assert shipped == set(native.INTERVENTIONS)
    for name in shipped:
        assert native.type_string(native.INTERVENTIONS[name]) == str(getattr(pyreft, name))



def test_low_rank_rotate_layer_as_pyreft():
    pyreft = needs_pyreft()
    for init_orth in (True, False):
        torch.manual_seed(2)
        theirs = pyreft.interventions.LowRankRotateLayer(HIDDEN, 5, init_orth=init_orth)
        torch.manual_seed(2)
        ours = native.LowRankRotateLayer(HIDDEN, 5, init_orth=init_orth)
        if init_orth:
            assert_same_state(theirs.state_dict(), ours.state_dict())
        else:  # uninitialised memory: give both the same values
            with torch.no_grad():
                theirs.weight.normal_()
            ours.load_state_dict(theirs.state_dict())
        x = torch.randn(3, HIDDEN, dtype=torch.float64)
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_initialisation_state_dict_and_forward_as_pyreft(name, dtype):
    pyreft = needs_pyreft()
    kwargs = dict(embed_dim=HIDDEN, low_rank_dimension=4, dtype=dtype, dropout=0.0, act_fn=None, add_bias=True)
    torch.manual_seed(0)
    theirs = getattr(pyreft, name)(**kwargs)
    after_theirs = torch.rand(4)
    torch.manual_seed(0)
    ours = native.INTERVENTIONS[name](**kwargs)
    assert torch.equal(torch.rand(4), after_theirs), "construction must draw the same random numbers"
    assert_same_state(theirs.state_dict(), ours.state_dict())  # bit-identical initialisation, same keys and dtypes
    assert sorted(n for n, _ in theirs.named_parameters()) == sorted(n for n, _ in ours.named_parameters())
    if dtype != torch.float32:
        return
    randomise(theirs)
    ours.load_state_dict(theirs.state_dict())
    assert_same_state(theirs.state_dict(), ours.state_dict())
    base = torch.randn(3, 7, HIDDEN)
    with torch.no_grad():
        assert torch.equal(ours(base), theirs(base))
        assert (ours(base) - base).abs().max() > 1e-2, "random weights: not the identity"
    frozen(ours)  # evaluation form: the rotation's value, no parametrisation, no gradients
    with torch.no_grad():
        assert torch.allclose(ours(base), theirs(base), atol=1e-6)
    assert not any(p.requires_grad for p in ours.parameters())


def test_relu_activation_and_no_bias_as_pyreft():
    pyreft = needs_pyreft()
    for name in ("LoreftIntervention", "NoreftIntervention", "NodireftIntervention", "DireftIntervention"):
        kwargs = dict(embed_dim=HIDDEN, low_rank_dimension=3, dtype=torch.float32, act_fn="relu", add_bias=False)
        torch.manual_seed(5)
        theirs = randomise(getattr(pyreft, name)(**kwargs))
        torch.manual_seed(5)
        ours = randomise(native.INTERVENTIONS[name](**kwargs))
        assert_same_state(theirs.state_dict(), ours.state_dict())
        base = torch.randn(2, 5, HIDDEN)
        with torch.no_grad():
            assert torch.equal(ours(base), theirs(base)), name


@pytest.mark.parametrize("name,layers", [("LoreftIntervention", (0, 1, 2, 3)), ("NoreftIntervention", (1, 2, 1, 2)),
                                         ("DireftIntervention", (3,)), ("ConsreftIntervention", (0, 2)),
                                         ("LobireftIntervention", (1,)), ("NodireftIntervention", (2,))])
def test_our_folder_is_byte_identical_to_reftmodel_save(tmp_path, name, layers):
    """pyreft's own ReftModel.save and our writer, on the same weights: the same files, byte for byte (config.json's
    fields and their order, the representations, types, keys, and every intkey_*.bin)."""
    pyreft = needs_pyreft()
    entries = reft_interventions(name, layers=layers)
    reps = []
    for e in entries:
        twin = getattr(pyreft, name)(embed_dim=HIDDEN, low_rank_dimension=e.rank, dtype=torch.float32, add_bias=True)
        twin.load_state_dict(e.module.state_dict())
        reps.append({"layer": e.layer, "component": e.component, "low_rank_dimension": e.rank, "intervention": twin})
    with stdout_to_stderr():  # pyvene announces the folder it creates on stdout
        pyreft.get_reft_model(load_nanollava("nanollava-tiny").model,
                              pyreft.ReftConfig(representations=reps)).save(str(tmp_path / "pyreft"))
    save_reft_folder(tmp_path / "ours", entries)
    names = sorted(p.name for p in (tmp_path / "pyreft").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert len(names) == 1 + len(layers)
    for file in names:
        assert filecmp.cmp(tmp_path / "pyreft" / file, tmp_path / "ours" / file, shallow=False), file


def test_pyreft_saved_folder_gives_the_same_outputs_in_ours(tmp_path):
    """A folder written by pyreft itself (its classes, its save) loads in our code and gives pyreft's logits."""
    pyreft = needs_pyreft()
    model = load_nanollava("nanollava-tiny").model
    torch.manual_seed(3)
    reps = [{"layer": layer, "component": layer_component(layer), "low_rank_dimension": 4,
             "intervention": randomise(pyreft.DireftIntervention(embed_dim=HIDDEN, low_rank_dimension=4,
                                                                 dtype=torch.float32), seed=layer)}
            for layer in (0, 2)]
    rm = pyreft.get_reft_model(model, pyreft.ReftConfig(representations=reps))
    with stdout_to_stderr():
        rm.save(str(tmp_path / "reft"))
    (tmp_path / "reft" / "vlm_peft_bench.json").write_text(json.dumps({"positions": "f3+l3", "share_weights": True}))
    batch, lengths = tiny_batch()
    from .adapter_factory import reference_locations

    locations = reference_locations("f3+l3", lengths, batch["input_ids"].shape[1])
    with torch.no_grad():
        _, expected = rm(dict(batch), unit_locations={"sources->base": (None, [locations] * 2)})
    got = logits_with(tmp_path / "reft", batch, lengths)
    mask = batch["attention_mask"].bool()
    assert (got - expected.logits)[mask].abs().max() < 1e-5


def test_pyreft_reads_our_folder(tmp_path):
    """Our folder through pyvene's and pyreft's own readers (config, types, keys, load_state_dict): same tensors.
    And through `ReftModel.load` itself, once pyvene is told the hidden size it cannot find on Llava: it rebuilds the
    learned source in bfloat16 (pyreft's default), so that part is compared in bfloat16."""
    needs_pyreft()
    entries = reft_interventions("LoreftIntervention", layers=(0, 3))
    folder = save_reft_folder(tmp_path / "reft", entries)
    rm = pyreft_model(folder)
    for e, theirs in zip(entries, rm.interventions.values()):
        assert type(theirs).__module__ == "pyreft.interventions"
        assert_same_state(e.module.state_dict(), theirs.state_dict())

    from unittest import mock

    import pyreft
    import pyvene.models.intervenable_base as base

    with mock.patch.object(base, "get_dimension_by_component", lambda *_: HIDDEN), stdout_to_stderr():
        loaded = pyreft.ReftModel.load(str(folder), load_nanollava("nanollava-tiny").model)
    assert list(loaded.interventions) == json.loads((folder / "config.json").read_text())["sorted_keys"]
    for e, theirs in zip(entries, loaded.interventions.values()):
        mine, got = e.module.state_dict(), theirs.state_dict()
        assert torch.equal(got["rotate_layer"], mine["rotate_layer"])
        for key in ("weight", "bias"):
            assert torch.equal(got[key], mine[key].bfloat16())


@pytest.mark.slow
def test_pyvene_notice_goes_to_stderr():
    needs_pyreft()
    script = ("from vlm_peft_bench.quiet import stdout_to_stderr\n"
              "with stdout_to_stderr():\n    import pyreft, pyvene\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""


def test_prepare_reft_initialises_as_pyreft_did():
    """Training's starting point: for the same seed, the interventions prepare_reft builds are bit-identical to the
    ones pyreft's classes built (the zoo adapter was trained from those)."""
    pyreft = needs_pyreft()
    from vlm_peft_bench.methods.recipe import load_recipe
    from vlm_peft_bench.methods.registry import family

    model = load_nanollava("nanollava-tiny").model
    torch.manual_seed(0)
    [method] = family("reft").prepare(load_recipe("reft-r4-all"), model)
    after_ours = torch.rand(4)
    torch.manual_seed(0)
    theirs = [pyreft.LoreftIntervention(embed_dim=HIDDEN, low_rank_dimension=4, dtype=torch.float32, dropout=0.0,
                                        add_bias=True) for _ in range(4)]
    assert torch.equal(torch.rand(4), after_ours)
    for mine, twin in zip(method.reft.modules, theirs):
        assert_same_state(twin.state_dict(), mine.state_dict())


# --- without pyreft -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TYPES)
def test_save_load_round_trip(tmp_path, name):
    entries = reft_interventions(name, layers=(1, 2, 1))
    folder = save_reft_folder(tmp_path / "reft", entries, "f2+l2", share_weights=False)
    specs = read_reft_config(folder)
    assert [(s.layer, s.intervention_type, s.rank, s.embed_dim) for s in specs] == [(1, name, 4, HIDDEN),
                                                                                     (2, name, 4, HIDDEN),
                                                                                     (1, name, 4, HIDDEN)]
    assert specs[2].key.endswith("#1") and specs[0].key.endswith("#0")
    base = torch.randn(2, 5, HIDDEN)
    for spec, e in zip(specs, entries):
        path = folder / f"intkey_{spec.key}.bin"
        state = load_intervention_state(path)
        assert_same_state(e.module.state_dict(), state)
        module = build_intervention(spec, state, torch.float32, path)
        assert_same_state(e.module.state_dict(), module.state_dict())
        with torch.no_grad():
            assert torch.equal(module(base), e.module(base))
            assert torch.allclose(frozen(module)(base), e.module(base), atol=1e-6)
    assert json.loads((folder / "vlm_peft_bench.json").read_text()) == {"positions": "f2+l2", "share_weights": False}


def test_the_evaluation_function_computes_a_frozen_loreft_bit_for_bit():
    """`evaluation_function` (the hook's fast path) gives exactly the module's numbers, and is offered only where
    the module is frozen LoReFT with the identity activation."""
    [entry] = reft_interventions("LoreftIntervention", layers=(1,))
    module = frozen(entry.module.eval())
    fast = native.evaluation_function(module)
    with torch.inference_mode():
        for rows in (1, 7, 9, 64):
            for _ in range(5):
                base = torch.randn(rows, HIDDEN)
                assert torch.equal(fast(base), module(base)), rows
    assert native.evaluation_function(entry.module.train()) is None  # trainable or parametrised: the module runs
    relu = native.INTERVENTIONS["LoreftIntervention"](embed_dim=HIDDEN, low_rank_dimension=3, dtype=torch.float32,
                                                      act_fn="relu")
    assert native.evaluation_function(frozen(relu.eval())) is None
    [other] = reft_interventions("NoreftIntervention", layers=(1,))
    assert native.evaluation_function(frozen(other.module.eval())) is None


def test_config_matches_the_zoo_reference(tmp_path):
    """The zoo's reft-r4-all was saved by pyreft's ReftModel.save: our writer gives the same config.json text and the
    same positions file, and rewriting the zoo's own weights through our modules gives the same .bin files."""
    import transformers

    specs = read_reft_config(ZOO_REFT)
    entries = []
    for spec in specs:
        path = ZOO_REFT / f"intkey_{spec.key}.bin"
        module = build_intervention(spec, load_intervention_state(path), torch.float32, path)
        entries.append(ReftEntry(spec.layer, layer_component(spec.layer), spec.rank, module))
    meta = json.loads((ZOO_REFT / "vlm_peft_bench.json").read_text())
    folder = save_reft_folder(tmp_path / "reft", entries, meta["positions"], meta["share_weights"])
    expected = (ZOO_REFT / "config.json").read_text()
    written = (folder / "config.json").read_text()
    assert written == expected.replace('"transformers_version": "4.45.1"',
                                       f'"transformers_version": "{transformers.__version__}"')
    assert (folder / "vlm_peft_bench.json").read_text() == (ZOO_REFT / "vlm_peft_bench.json").read_text()
    for spec in specs:
        name = f"intkey_{spec.key}.bin"
        assert_same_state(torch.load(ZOO_REFT / name, weights_only=True), torch.load(folder / name, weights_only=True))


def test_unknown_intervention_type_in_a_recipe():
    from vlm_peft_bench.methods.recipe import load_recipe
    from vlm_peft_bench.methods.registry import family

    recipe = load_recipe("reft-r4-all").replace_section("reft", intervention="Backdoor")
    with pytest.raises(AdapterError, match="unknown pyreft intervention type 'Backdoor'"):
        family("reft").prepare(recipe, load_nanollava("nanollava-tiny").model)


BLOCKER = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyreft", "pyvene"):
            raise ImportError(f"{name} is blocked (test: the package must not need it)")
        return None

sys.meta_path.insert(0, Blocker())
"""


@pytest.mark.slow
def test_evaluation_and_training_never_import_pyreft_or_pyvene(tmp_path):
    script = BLOCKER + textwrap.dedent(f"""
        import torch
        from PIL import Image
        try:
            import pyreft
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker does not work")
        import vlm_peft_bench.cli, vlm_peft_bench.lmms.vlreft, vlm_peft_bench.adapters.accounting
        from vlm_peft_bench.methods.attach import attach_adapter
        from vlm_peft_bench.nanollava.loading import load_nanollava
        from vlm_peft_bench.train.trainer import train

        loaded = load_nanollava("nanollava-tiny")
        batch = loaded.processor(["How many squares?"], [Image.new("RGB", (64, 64), "cyan")])
        attached = attach_adapter(loaded.model, {str(ZOO_REFT)!r})
        n = batch["input_ids"].shape[1]
        with torch.no_grad():
            bare = attached.model(**batch).logits
            with attached.reft.intervene(batch["attention_mask"], [n], False):
                intervened = attached.model(**batch).logits
        assert (bare - intervened).abs().max() > 1e-4
        card = train("reft-r4-all", "cvbench_mini", {str(tmp_path / "trained")!r}, limit=2, evaluate_test=False,
                     card_dir=None)
        assert card["training"]["steps"] == 2, card["training"]
        blocked = sorted(m for m in sys.modules if m.split(".")[0] in ("pyreft", "pyvene"))
        assert not blocked, blocked
        print("NO-PYREFT-OK")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert done.returncode == 0 and "NO-PYREFT-OK" in done.stdout, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "trained").glob("intkey_*.bin")) == sorted(
        p.name for p in ZOO_REFT.glob("intkey_*.bin"))
