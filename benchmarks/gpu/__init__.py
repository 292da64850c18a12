"""GPU benchmark of `vlreft`: the full-size nanoLLaVA architecture, random bf16 weights, one accelerator.

The measurements of `benchmarks/run.py` (the CPU suite, on the tiny checkpoint) at full size, plus generated and
prefill tokens per second against the card's peak:

    vlreft_bs1          our model path (VLReft.generate_until's, driven without lmms-eval), no adapter, batch 1
    llava_hf_bs1        lmms-eval's own `llava_hf` on the same weights (saved to a temporary folder); needs lmms-eval
    reft_bs1            + the zoo's reft-r4-all recipe (LoReFT rank 4, f3+m3+l3, shared weights, every decoder layer),
                        attached with our `attach_adapter` (pyreft not needed)
    lora_unmerged_bs1   + the zoo's lora-r8 recipe (LoRA r 8 on q_proj and v_proj), unmerged; needs peft
    lora_merged_bs1     the same LoRA merged into the weights; needs peft
    vlreft_bs8          no adapter, batch 8
    vlreft_bs1_prefill, vlreft_bs8_prefill
                        vlreft_bs1 / bs8 generating one token: the prefill time, from which the decode time follows

Adapters are made by the training code (the method registry's `prepare` and the stage's `save`) from the
zoo's recipes, then loaded as vlreft loads any. A configuration whose library is missing is recorded as skipped, one
that fails as failed, each with the reason; the rest still run. Timed passes are interleaved (every repeat runs every
configuration, in a rotated order) and medians are taken; ratios and targets are run.py's (`benchmarks/common.py`).
Peak memory per configuration: the bytes of its own weights plus the most `torch.cuda.max_memory_allocated` rose
above what was allocated before its pass (activations, KV cache, inputs), i.e. the peak it would have alone on the
card.

Random weights produce junk, so the work is fixed instead: the lm_head rows of special tokens and of ids the
tokenizer lacks are zeroed, so greedy decoding never picks them (a zero logit loses to the largest of ~600 random
ones) and every row generates exactly --new-tokens tokens in every configuration, llava_hf included (it takes no
min_new_tokens); the direct path checks it. The tokenizer is nanollava-tiny's: its 596 ids are all rows of the
151,936-row vocabulary, and the model's image token id is its `<image>`. The cost of the computation is the full
model's either way.

Modules, by job: `peaks` (the datasheet table), `model` (random model, inputs), `runners` (configurations, adapters,
the two ways to generate), `measure` (timed passes, per-configuration results, ratios, agreement), `flops` (the FLOP
and byte model, throughput against peak), `report` (the printed tables), `cli` (arguments, the JSON).

    bash benchmarks/gpu.sh [--quick] [--items 16] [--repeats 5] [--new-tokens 32] [--peak-tflops T] [--out PATH]
    bash benchmarks/gpu.sh --device cpu --size toy --quick      # the CPU smoke path the tests run
"""
