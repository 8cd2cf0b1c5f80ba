"""The fault harness: real relay and worker processes, real faults, counts of what was lost.

    from insane.devkit.chaos.harness import Chaos   # runs the phases (harness.py says what each does)
    from insane.devkit.chaos.plan import Plan, table

``faultworker`` is the worker process the harness starts (the real worker, killed by a poison image).
Nothing is imported here, so that the worker processes load only what they run.
"""
