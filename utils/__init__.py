"""Helpers for the notebook series *Catastrophic Failure of LLM Unlearning via Quantization*.

Every notebook imports from here; nothing is copied between notebooks. Modules by concern:

- ``utils.config``        the parameters cell: ``UQ_*`` environment variables, validated
- ``utils.repro``         seeding and device choice
- ``utils.toy``           notebook 01's toy: a small MLP that memorises points and forgets one
- ``utils.quantization``  RTN, bitsandbytes FP4/NF4/LLM.int8, code-identity diagnostics
- ``utils.gptq``, ``utils.awq``  GPTQ and AWQ teaching versions (registered as ``gptq4``, ``awq4``)
- ``utils.mechanism``     why the recovery happens: fp32 controls, level tables, delta statistics
- ``utils.data``          the offline MUSE-mini corpus and the real MUSE loader
- ``utils.models``        tiny Llama target / retrain oracle, cache, loader for hub ids and paths
- ``utils.metrics``       VerbMem, KnowMem, PrivLeak (Min-K%), true-answer probability
- ``utils.unlearning``    GA, NPO, GDR, KLR losses and the one training loop
- ``utils.sure``          saliency maps and masked unlearning
- ``utils.muse``          the real MUSE data through ``datasets``
- ``utils.plots``         tested plotting functions (also behind the widgets)
- ``utils.study``         the headless study runner (``python -m utils.study``)
- ``utils.series``        run the whole series / sync notebook pairs
"""

__version__ = "0.1.0"
