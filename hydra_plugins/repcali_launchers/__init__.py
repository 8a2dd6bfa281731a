"""repcali's Hydra launchers: the maintained submitit and joblib launchers, adapted for sweeps of runs
(the logic is in :mod:`repcali.launchers`; Hydra instantiates launchers only from ``hydra_plugins``)."""
