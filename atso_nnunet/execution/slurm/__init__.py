"""The SLURM executor through submitit: configuration, the compute-node environment, the executor,
and a local single-node cluster for tests."""
