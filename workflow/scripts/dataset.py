"""Rule dataset: N training points and the fixed test set of a (function, seed) -> one .pt file.

The job runs in a child of the run's warm process (kanlib.workflow.warm) or, when none answers,
here; its logic is kanlib.workflow.jobs.make_dataset.
"""

from kanlib.workflow import warm
from kanlib.workflow.runtime import exit_job, hold_jobs_lock

hold_jobs_lock()
job = warm.rule_job(snakemake)
status = warm.run(job)
exit_job(warm.execute(job) if status is None else status)
