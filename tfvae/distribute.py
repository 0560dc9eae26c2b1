"""Helpers for training under `tf.distribute` strategies.

Both models train under `tf.distribute.MirroredStrategy` and
`tf.distribute.MultiWorkerMirroredStrategy` as they are: their `train_step`
scales each replica's loss so that the summed gradients are those of the
global batch mean, and their noise is keyed by each example's index in the
global batch, so a step on several replicas updates the weights as one
device would. In a multi-worker cluster, every worker runs the same program
and only the chief should write files: `is_chief` tells which one this is.
`tfvae.export_saved_model` and the `tfvae.callbacks` write on the chief only.
"""

import tensorflow as tf

__all__ = ["is_chief"]


def is_chief(strategy=None):
    """Whether this process writes the files of a (multi-worker) run.

    True on a single machine and on the chief of a multi-worker cluster: the
    task of type `"chief"`, or worker 0 in a cluster that has no chief.

    Args:
        strategy: a `tf.distribute.Strategy`, such as a model's
            `model.distribute_strategy`; by default the strategy of the
            current scope.
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def in_multi_worker_mode(strategy=None):
    """Whether `strategy` (the current one by default) spans several workers."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    # No public API tells a multi-worker strategy that runs on one worker from
    # one that spans several; Keras itself reads this attribute.
    return strategy.extended._in_multi_worker_mode()  # noqa: SLF001
