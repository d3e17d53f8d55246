"""SGD with momentum and AlexNet's weight decay."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="alexnet_tf")
class MomentumWithWeightDecay(keras.optimizers.SGD):
    """SGD with momentum whose weight decay goes through the momentum.

    Implements the update of Krizhevsky et al. (2012), section 5:

        v <- momentum * v - weight_decay * lr * w - lr * grad
        w <- w + v

    that is, `weight_decay * w` is added to the gradient before the momentum
    update. Keras' own `weight_decay` argument instead shrinks the weights
    outside the momentum (decoupled weight decay, as in AdamW), which is a
    different method. Only weights decay: variables of rank 1 and lower, the
    biases, do not.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum coefficient in [0, 1]. Defaults to 0.9.
        l2_weight_decay: coefficient multiplying the weights added to their
            gradients, at least 0. Defaults to 5e-4.
        **kwargs: further arguments of `keras.optimizers.SGD`, except
            `weight_decay`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2_weight_decay=5e-4, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(
                "Pass l2_weight_decay, not weight_decay: the latter is decoupled "
                f"weight decay. Received: weight_decay={kwargs['weight_decay']}"
            )
        if l2_weight_decay < 0:
            raise ValueError(
                f"Expected l2_weight_decay >= 0. Received: l2_weight_decay={l2_weight_decay}"
            )
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2_weight_decay = float(l2_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2_weight_decay and len(variable.shape) > 1:
            decay = ops.cast(self.l2_weight_decay, variable.dtype)
            gradient = ops.add(gradient, ops.multiply(decay, variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2_weight_decay"] = self.l2_weight_decay
        return config

