"""Bridges to recommenders trained by other libraries (optional extras; each imports its library lazily).

- :mod:`saerec.contrib.recbole`: RecBole's SASRec (``pip install 'saerec[recbole]'``): read its
  ``.pth`` without unpickling code, convert it to safetensors, and run RecBole's own module in saerec.
"""
