"""Stand-alone training (``nas train``): one architecture, or a timm model, trained on its own.

A candidate's search figure is its top-1 with weights inherited from the supernet; this trains
it stand-alone (from scratch, or fine-tuned from those inherited weights with ``init=inherit``)
so the two can be compared, and trains the timm models a user would otherwise pick with the same
recipe, built from timm's training utilities.

``recipe`` (RetrainRecipe: how), ``candidates`` (what: a study's trial, an arch file, a timm
baseline), ``baselines`` (the timm glue), ``loop`` (``retrain``: one run, resumable through
``nas.resumable``), ``trainers`` (the Trainer contract, LocalTrainer), ``tune`` (TuneTrainer on
Ray Tune) and ``command`` (``run_train``). Nothing is imported here: a config that names
``nas.training.recipe.RetrainRecipe`` loads that module and what it needs only.
"""
