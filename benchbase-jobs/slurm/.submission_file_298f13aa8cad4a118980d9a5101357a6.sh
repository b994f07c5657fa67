#!/bin/bash

# Parameters
#SBATCH --cpus-per-task=1
#SBATCH --error=/work/main/benchbase-jobs/slurm/%j_0_log.err
#SBATCH --job-name=submitit
#SBATCH --mem=8192M
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=/work/main/benchbase-jobs/slurm/%j_0_log.out
#SBATCH --signal=USR2@90
#SBATCH --time=120
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /work/main/benchbase-jobs/slurm/%j_%t_log.out --error /work/main/benchbase-jobs/slurm/%j_%t_log.err /work/main/.venv/bin/python -u -m submitit.core._submit /work/main/benchbase-jobs/slurm
