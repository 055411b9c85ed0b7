"""Cargohold and the reference registry (CNCF distribution 2.8) side by side: the same
workloads against both, interleaved, over several rounds. Run it with ``bench/run``."""
