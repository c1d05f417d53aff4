"""Benchmarks, one script per question; run each from the repository root as
``python -m benchmarks.<name> --help``. BENCHMARKS.md holds their figures, section by section:

1. Setup and the default search (the 2-core machine): ``setup_fresh_clone``, ``setup_trial_costs``
2. How fast the supernet trains: ``supernet_training``
3. In-place distillation in a short recipe: ``supernet_ablation``
4. A search on one GPU, and the whole pipeline: ``search_phases``, ``search_pipeline``,
   ``baseline_speed``
5. Ranking, inherited vs stand-alone: ``search_ranking``
6. TPE vs random search: ``search_efficiency``, ``search_pareto``
7. What the Pareto fronts pick: ``search_pareto``
8. Found models vs timm baselines: ``found_vs_baselines``
9. Repeatability of a latency measurement: ``latency_repeatability``, ``latency_process_ab``
10. The latency predictor's accuracy: ``latency_predictor``
11. Sparse ops: ``sparse_ops``
12. Scale-out and crash safety: ``scale_out_correctness``, ``scale_out_throughput``,
    ``scale_out_agreement``, ``scale_out_interference``, ``scale_out_recorded``
13. Beyond one GPU: ``supernet_training`` (``supernet.devices``), ``scale_out_throughput``
14. The service: ``web_service``

Shared pieces: ``_harness`` (config, supernet training, result files, paired statistics, the
``nas`` subprocess) and ``_scale_out`` (the background search the scale-out scripts drive).
"""
