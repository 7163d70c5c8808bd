"""Real-Dovecot integration tests for the coi plugin (pytest).

Importable as the package ``tests`` so that ``tests.harness`` can be shared by
``scripts/demo.py`` and ``bench/lmtp_throughput.py``.
"""
