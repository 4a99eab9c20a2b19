"""The posture engine: pure, synchronous maths from IMU samples to posture frames and events.

Nothing here does I/O or touches asyncio, so the live daemon, the demo and ``slouchd replay`` run
the very same code.
"""
