"""The deployment engine: staged rollouts applied to the world.

:mod:`farm.rollout` decides (plan, state machine, resolver, checks' verdicts) and does no
I/O; this package does the I/O around it: reads the plan from the released commit,
persists every transition as a compare-and-set, runs deploy and check jobs on the farm,
probes health URLs, and answers which client gets which version.
"""
