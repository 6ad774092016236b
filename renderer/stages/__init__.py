"""Stages: each module turns part of a script into files, as nodes of the stage graph."""
