"""Interpretation: feature x attribute statistics (correlation, ROC AUC, sensitivity, precision),
top features per attribute vs the raw-neuron baseline, and the feature catalog."""
