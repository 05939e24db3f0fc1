"""A model family of a user's own, for tests/workflow/test_toy_family.py: one module and one config entry
(``families: [toy_family:FAMILY]``) make the workflow train it, log it and report it.

A "toy" model is an MLP with one hidden tanh layer whose width comes from the family's settings
(``family_settings: {toy: {hidden: [...]}}``); it trains a fixed 6 L-BFGS steps.
"""

from kanlib.families import Family, Job


class ToyFamily(Family):
    name, label, color = "toy", "Toy", "tab:green"
    model_class, stack_class = "kanlib.mlp:MLP", "kanlib.mlp:MLPStack"
    model_pattern = r"toy_h\d+"
    TRAIN_KEYS = ("optimizer", "lr", "batch", "device", "dtype", "model_seed_offset", "test_num", "input_range")

    def jobs(self, config):
        hidden = config.get("family_settings", {}).get("toy", {}).get("hidden", [])
        functions = [entry["name"] if isinstance(entry, dict) else entry for entry in config["functions"]]
        return [
            Job("toy", function, (2, h, 1), int(n), int(seed), (("hidden", h),))
            for function in functions
            for h in hidden
            for n in config["data_sizes"]
            for seed in config["seeds"]
        ]

    def model_segment(self, job):
        return f"toy_h{job.get('hidden')}"

    def job_from_path(self, config, function, model, level, n_train, seed):
        hidden = int(model.removeprefix("toy_h"))
        return Job("toy", function, (2, hidden, 1), int(n_train), int(seed), (("hidden", hidden),))

    def hyperparameters(self, config):
        return {"steps": 6, **{key: config[key] for key in self.TRAIN_KEYS}}

    def record(self, config, job):
        return {**super().record(config, job), "activation": "tanh"}

    def run_name(self, job):
        return f"{job.function} toy h{job.get('hidden')} N{job.n_train} seed{job.seed}"

    def n_params(self, job):
        return sum((a + 1) * b for a, b in zip(job.width, job.width[1:]))

    def resources(self, config, job, attempt, n_models):
        return {"mem_mb": 1000 * attempt, "runtime": 10 * attempt, "cpus_per_task": 1}

    def build(self, job, hp, model_seed):
        MLP = self.load_class()
        return MLP(width=list(job.width), activation="tanh", seed=model_seed, device=hp["device"], dtype=hp["dtype"])

    def theory_alpha(self, k, n_var):
        return 1.0

    theory_label = "1"


FAMILY = ToyFamily()
