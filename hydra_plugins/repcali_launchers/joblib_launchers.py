"""``hydra/launcher=local_gpus``: hydra-joblib-launcher with one worker process per GPU, each on its own GPU."""

from __future__ import annotations

import sys

from repcali.launchers import OneGpu, visible_gpus
from repcali.threads import SharedCores

try:  # the `cluster` extra; without it Hydra's plugin scan must still import this module
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # pragma: no cover
    JoblibLauncher = None


if JoblibLauncher is not None:

    class LocalGpuLauncher(JoblibLauncher):
        def setup(self, *, hydra_context, task_function, config) -> None:
            count = int(self.joblib.get("n_jobs", 1))
            gpus = visible_gpus(count)
            if not 1 <= count <= len(gpus):
                sys.exit(
                    f"error: hydra/launcher=local_gpus runs {count} jobs at once on GPUs {gpus}. Fix: set "
                    "cluster.gpus_per_node to the number of GPUs to use (at most those in CUDA_VISIBLE_DEVICES)."
                )
            shared = SharedCores(task_function, count)  # n_jobs workers at once: each its share of the cores
            super().setup(hydra_context=hydra_context, task_function=OneGpu(shared, gpus), config=config)
