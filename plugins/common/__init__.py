"""Code the built-in plugins share: checkpoint reading (numpy) and MindSpore layers.

``checkpoint`` imports numpy only; ``layers`` and ``weights`` import MindSpore and
are imported only when a component is built.
"""
