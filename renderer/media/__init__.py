"""Media tools and formats: the ffmpeg runner, encoder settings, audio measurement, the synthesised ambient
pad, ASS / ANSI text, captions files, thumbnails. Knows nothing of graphs, stages or runs.
"""
