"""The engine: a generic stage graph (graph.py: nodes in node.py, content keys in keys.py, a run's steps in
run.py, what a run tells in observer.py), what stages return (output.py) and the content-addressed cache
(cache.py). It knows nothing of video, and reports through the observer it is given.
"""
