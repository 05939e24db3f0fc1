"""Rules train, train_mlp, train_seeds and train_mlp_seeds: one grid level of one KAN chain (of every
seed's chain), or one MLP of the baseline family (for every seed), logged as MLflow child runs.

The job runs in a child of the run's warm process (kanlib.workflow.warm: torch already imported)
or, when none answers, here; its logic is kanlib.workflow.train_job. This script only hands it over.
"""

from kanlib.workflow import warm
from kanlib.workflow.runtime import exit_job, hold_jobs_lock

hold_jobs_lock()  # this process lives as long as the job: a rerun sees the job running
job = warm.rule_job(snakemake)
status = warm.run(job)
exit_job(warm.execute(job) if status is None else status)  # no interpreter teardown of torch (~1 s)
