"""Benchmarks, one script per question; run each from the repository root as
``python -m benchmarks.<name> --help``. BENCHMARKS.md holds their figures, section by section:

1. Setup and the default search: ``setup_fresh_clone``, ``setup_trial_costs``
2. The supernet: ``supernet_training``, ``supernet_ablation``
3. Sparse ops: ``sparse_ops``
4. Latency measurement and the learned predictor: ``latency_repeatability``,
   ``latency_predictor``, ``latency_process_ab``
5. Scale-out and crash safety: ``scale_out_correctness``, ``scale_out_throughput``,
   ``scale_out_agreement``, ``scale_out_interference``, ``scale_out_recorded``
6. Search quality: ``search_pareto``

Shared pieces: ``_harness`` (config, supernet training, result files, paired statistics, the
``nas`` subprocess) and ``_scale_out`` (the background search the scale-out scripts drive).
"""
