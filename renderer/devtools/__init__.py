"""Developer tools that are not part of rendering: the local doubles of the cloud APIs.
"""
