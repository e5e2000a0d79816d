"""Developer scripts: the demo, and the documentation site's build helpers."""
