"""``hydra/launcher=slurm``, ``slurm_multigpu`` and ``local``: hydra-submitit-launcher's launchers that
refuse to submit without a partition, skip completed runs and start multi-GPU jobs as torchrun would;
``local`` starts its jobs at once, each told so (:func:`repcali.threads.started_together`)."""

from __future__ import annotations

import os
import sys

from repcali.launchers import NO_PARTITION, export_distributed, unfinished
from repcali.threads import started_together

try:  # the `cluster` extra; without it Hydra's plugin scan must still import this module
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # pragma: no cover
    submitit_launcher = None


if submitit_launcher is not None:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        def setup(self, *, hydra_context, task_function, config) -> None:
            if not self.params.get("partition"):  # before the sweeper composes every job: an instant answer
                sys.exit(NO_PARTITION)
            if self.params.get("setup") is None:  # cluster.setup (a list: the YAML cannot interpolate it)
                self.params["setup"] = list(config.cluster.setup)
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

        def launch(self, job_overrides, initial_job_idx):
            left = unfinished(job_overrides)
            return super().launch(left, initial_job_idx) if left else []

        def __call__(self, *args, **kwargs):  # in the job, on each of its tasks
            export_distributed()
            return super().__call__(*args, **kwargs)

    class LocalLauncher(submitit_launcher.LocalLauncher):
        def launch(self, job_overrides, initial_job_idx):
            left = unfinished(job_overrides)
            self.shared = started_together(len(left))  # submitit starts them all at once: each its share of the cores
            return super().launch(left, initial_job_idx) if left else []

        def __call__(self, *args, **kwargs):  # in the job, the process that trains
            os.environ.update(self.shared)
            return super().__call__(*args, **kwargs)
