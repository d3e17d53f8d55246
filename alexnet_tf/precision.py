"""Compute precision: the float types a run can compute in, and their Keras dtype policies.

The variables stay float32 in every precision. "bfloat16" and "float16" only
change the dtype of the activations and of the matrix products, through Keras'
mixed dtype policies ("mixed_bfloat16", "mixed_float16").
"""

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
DTYPES = (FLOAT32, BFLOAT16, FLOAT16)

_POLICY_NAMES = {
    FLOAT32: "float32",
    BFLOAT16: "mixed_bfloat16",
    FLOAT16: "mixed_float16",
}


def check_dtype(dtype):
    """Raises a ValueError naming `dtype` and the choices if it is not in `DTYPES`."""
    if dtype not in DTYPES:
        raise ValueError(
            f"Expected dtype in {DTYPES}. Received: dtype={dtype!r}. Pass float32, "
            "or bfloat16 or float16 for mixed precision."
        )


def policy_name(dtype):
    """Returns the name of the Keras dtype policy that computes in `dtype`.

    Args:
        dtype: an entry of `DTYPES`.

    Returns:
        "float32", "mixed_bfloat16" or "mixed_float16".

    Raises:
        ValueError: if `dtype` is not in `DTYPES`.
    """
    check_dtype(dtype)
    return _POLICY_NAMES[dtype]


def needs_loss_scaling(dtype):
    """Returns whether training in `dtype` needs dynamic loss scaling.

    float16 has 5 exponent bits, so gradients below about 6e-8 round to zero
    unless the loss is scaled up first. bfloat16 has float32's 8 exponent bits
    and needs no scaling.

    Raises:
        ValueError: if `dtype` is not in `DTYPES`.
    """
    check_dtype(dtype)
    return dtype == FLOAT16
