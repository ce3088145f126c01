"""The batched trainer: it computes the numpy forward's function, converges, re-checks, and is deterministic."""

import numpy as np
import pytest
import torch

from metamodels.errors import MetamodelsError
from metamodels.transformer import trained
from metamodels.zoo import tasks, trainer

PROGRAMS = {
    "reverse": lambda xs: list(reversed(xs)),
    "shift": lambda xs: [None, *xs[:-1]],  # undefined at position 0: masked out of loss and accuracy
    "parity": lambda xs: [x % 2 == 0 for x in xs],
}


def make_tasks(vocab=(1, 2, 3), length=4, causal=False):
    out = []
    for i, (key, fn) in enumerate(PROGRAMS.items()):
        task = tasks.make_task(key, fn, vocab, length, causal, seed=i, lr=1e-2, config=tasks.DataConfig(heldout=64))
        assert not isinstance(task, str)
        out.append(task)
    return out


def recheck(task: trainer.Task, model: trained.TrainedModel) -> float:
    """Held-out accuracy recomputed by the numpy forward from the stored held-out inputs."""
    inputs = tasks.heldout_inputs(task)
    targets = [[None if j < 0 else task.output_vocab[j] for j in row[: len(xs)]]
               for xs, row in zip(inputs, task.heldout_targets)]  # fmt: skip
    return trained.token_accuracy(model, inputs, targets)


@pytest.mark.parametrize(
    "arch",
    [
        trainer.Architecture(d_model=16, n_heads=2, d_mlp=32),
        trainer.Architecture(d_model=16, n_heads=4, norm="layernorm", activation="gelu"),
    ],
)
def test_every_view_rechecks_with_the_numpy_forward_and_runs_repeat(arch):
    torch.set_num_threads(1)
    config = trainer.TrainerConfig(slots=2, batch_size=16, max_steps=600, bar=0.9, view_steps=(50,))
    task_list = make_tasks(causal=arch.norm == "layernorm")
    outcomes = list(trainer.train_many(task_list, arch, config, seed=0))
    assert sorted(o.key for o in outcomes) == sorted(PROGRAMS)
    by_key = {t.key: t for t in task_list}
    converged = [o for o in outcomes if o.failure is None]
    assert converged, [(o.key, o.heldout_accuracy) for o in outcomes]
    for o in converged:
        for view in o.views:
            assert view.heldout_accuracy >= config.bar
            assert recheck(by_key[o.key], view.model) == pytest.approx(view.heldout_accuracy, abs=1e-6)
    again = list(trainer.train_many(task_list, arch, config, seed=0))
    assert [(o.key, o.steps, o.heldout_accuracy) for o in again] == [
        (o.key, o.steps, o.heldout_accuracy) for o in outcomes
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_training_converges_and_its_models_recheck_on_the_cpu():
    arch = trainer.Architecture(d_model=16, n_heads=2, d_mlp=32)
    config = trainer.TrainerConfig(slots=2, batch_size=16, max_steps=600, bar=0.9, view_steps=(50,))
    task_list = make_tasks()
    by_key = {t.key: t for t in task_list}
    converged = [o for o in trainer.train_many(task_list, arch, config, seed=0, device="cuda") if o.failure is None]
    assert converged
    for o in converged:  # the stored weights are CPU numpy arrays; GPU and numpy arithmetic differ in rounding only
        for view in o.views:
            assert recheck(by_key[o.key], view.model) == pytest.approx(view.heldout_accuracy, abs=0.02)


def test_a_task_that_cannot_be_learned_is_reported_not_dropped():
    rng = np.random.default_rng(0)
    noise = {xs: [int(v) for v in rng.integers(0, 3, len(xs))] for xs in tasks.input_pool((1, 2, 3), 4, 1000, rng)}
    task = tasks.make_task("noise", lambda xs: noise[xs], (1, 2, 3), 4, False, 0, 1e-3, tasks.DataConfig(heldout=64))
    config = trainer.TrainerConfig(slots=1, max_steps=100, bar=0.99)
    (outcome,) = trainer.train_many([task], trainer.Architecture(d_model=16), config, seed=0)
    assert outcome.failure == "not_converged" and outcome.views == () and outcome.steps == 100


def test_bad_data_is_a_failure_reason_and_bad_settings_an_error():
    assert (
        tasks.make_task("raises", lambda xs: [1 // 0], (1, 2), 3, False, 0, 1e-3, tasks.DataConfig())
        == "evaluation_error"
    )
    many = tasks.make_task("many", lambda xs: [sum(xs) * 1000 + len(xs) for _ in xs], tuple(range(20)), 4, False, 0,
                           1e-3, tasks.DataConfig())  # fmt: skip
    assert many == "too_many_output_values"
    with pytest.raises(MetamodelsError, match="--bar"):
        trainer.TrainerConfig(bar=1.5)
    with pytest.raises(MetamodelsError, match="multiples"):
        trainer.TrainerConfig(eval_every=50, view_steps=(70,))
