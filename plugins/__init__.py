"""The built-in plugins, one folder each, registered through the ``hunyuan_zoo``
entry-point group exactly as a third-party package would be."""
