"""Running a grid: planning runs from grid files, executing them (local, Ray, Slurm), the results store
and its maintenance."""
