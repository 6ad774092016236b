"""The engine: the stage graph and its cache, composing a script's graph from config, rendering one script
(pipeline) and a batch of them (batch).
"""
