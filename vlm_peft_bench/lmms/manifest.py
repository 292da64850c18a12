"""The entry point lmms-eval reads (group `lmms_eval.models`) to find the `vlreft` model."""

from lmms_eval.models.registry_v2 import ModelManifest

VLREFT_MANIFEST = ModelManifest(model_id="vlreft", simple_class_path="vlm_peft_bench.lmms.vlreft.VLReft")
