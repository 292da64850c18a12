"""Build scripts of vlm-peft-bench's committed files, run from a checkout; not part of the installed package.

    python -m vlm_peft_bench_build.tiny                              config and tokenizer of nanollava-tiny
    python -m vlm_peft_bench_build.pretrain_tiny ...                 its pre-trained weights (GPU; see the module)
    python -m vlm_peft_bench_build.synthetic.write_cvbench_mini      tasks/cvbench/mini/
    python -m vlm_peft_bench_build.synthetic.write_caption_vqa_mini  tasks/coco_captions/mini/, tasks/vqa_v2/mini/

`synthetic/` draws the procedural scenes of the mini tasks and of the pre-training data. These scripts import the
package (`vlm_peft_bench`); nothing in the package imports them (tests may; tests/test_import_layers.py checks it),
and the wheel does not ship them: what they write (the tiny model's files, the mini data) is what ships.
"""
