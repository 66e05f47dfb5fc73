"""KFP v2 components: one folder each, a thin ``component.py`` over a plain tested function."""
