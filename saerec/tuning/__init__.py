"""Hyperparameter search over SAEs with Ray Tune (``saerec tune``): ``trial`` is Ray-free, ``experiment``
orchestrates. (Not named ``tune``: that name belongs to Ray, and to the top-level ``tune/`` specs.)"""
