"""The command-line tools, each also ``python -m renderer.<name>``: check, clean, watch, themes, cache; and the
sweep summary callback.
"""
