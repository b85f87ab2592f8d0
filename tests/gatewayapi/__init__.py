"""The Gateway API corpus: manifests and cases (cases.py says how to use them)."""
