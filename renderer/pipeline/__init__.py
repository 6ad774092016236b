"""A script rendered: its stage graph composed from the config (compose.py) and run into its folder
(render.py)."""
