"""The method registry: one module per method family, each declaring in one place what the rest of the project
needs to know about it.

A family module (`reft.py`, `lora.py`, `dora.py`, `prefix.py`, `pt_lora.py`, `full.py`, `peft_other.py`) holds:

* `INFO`, a plain literal: the method's name, its label and colour on the leaderboard, the saved format it writes
  and the markers that recognise its saved folders. `table.py` reads these literals without importing the modules,
  so the leaderboard (which must not load torch, peft or a model) sees the same table as everything else;
* its typed recipe sections (dataclasses in `recipe.py`, unknown keys refused by name);
* `FAMILY`, a `base.MethodFamily`: how a saved folder is loaded onto a model, described and checked (`inspect`),
  how the method is prepared for training and saved, and how its parameters are counted.

`registry.family(name)` imports the family modules; detection (`table.recognise`), loading (`attach.py`), training,
accounting (`params.py`), cards and the leaderboard all read from here. Adding a method is adding one module here,
a recipe in `adapters_zoo/recipes/` and tests.
"""
