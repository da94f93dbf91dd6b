"""What the tests and the benchmarks share: real servers found or started
(:mod:`harness.services`), tracker's processes run as a user runs them
(:mod:`harness.processes`), and names and ports a run has to itself
(:mod:`harness.isolation`). Neither imports the other; both import this.
"""
