"""Operations: cancellation, retries and circuit breakers, logs, health samples and the monitor, live endpoints,
admission, progress, the run report, atomic files.
"""
