"""Figure 3 of the AlexNet paper: the first convolution layer's kernels as an image grid.

Krizhevsky, Sutskever and Hinton ("ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012) show the 96 RGB kernels of conv1,
11x11 pixels each, the 48 that feed the first GPU's tower above the 48 of the
second.
"""

import keras
import numpy as np

PER_KERNEL = "per_kernel"
GLOBAL = "global"
KERNEL_CONTRASTS = (PER_KERNEL, GLOBAL)


def scale_kernels(kernels, contrast=PER_KERNEL):
    """Maps convolution weights to 0-255 pixel values for display.

    Args:
        kernels: float array `(height, width, 3, count)`, a Keras Conv2D kernel.
        contrast: `"per_kernel"` stretches each kernel's own minimum and
            maximum to 0 and 255, so weak kernels show their pattern too, as
            in the paper's figure 3. `"global"` uses the minimum and maximum
            over all kernels, so brightness compares across kernels.

    Returns:
        A uint8 array `(count, height, width, 3)`. A constant kernel, or all
        kernels when every weight is equal, becomes grey 128.
    """
    if contrast not in KERNEL_CONTRASTS:
        raise ValueError(
            f"Expected contrast in {KERNEL_CONTRASTS}. Received: contrast={contrast!r}"
        )

    kernels = np.moveaxis(np.asarray(kernels, np.float32), -1, 0)
    axes = (1, 2, 3) if contrast == PER_KERNEL else None
    low = kernels.min(axis=axes, keepdims=True)
    span = kernels.max(axis=axes, keepdims=True) - low

    stretched = (kernels - low) / np.where(span > 0, span, 1.0) * 255.0
    scaled = np.where(span > 0, stretched, 128.0)
    return np.round(scaled).astype(np.uint8)


def _tile_block(tiles, columns, gap):
    """Places tiles `(count, height, width, 3)` row by row on a white canvas."""
    count, height, width, _ = tiles.shape
    rows = -(-count // columns)
    canvas = np.full(
        (rows * height + (rows + 1) * gap, columns * width + (columns + 1) * gap, 3),
        255,
        np.uint8,
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top = gap + row * (height + gap)
        left = gap + column * (width + gap)
        canvas[top : top + height, left : left + width] = tile
    return canvas


def kernel_grid(kernels, groups=1, columns=16, scale=4, gap=1, tower_gap=4, contrast=PER_KERNEL):
    """Tiles RGB convolution kernels into one image, one block per group.

    The `count` kernels are split into `groups` blocks of consecutive kernels.
    With the paper's network, conv2 has two groups, so kernels 0-47 of conv1
    feed the first tower (GPU 1) and 48-95 the second. As in the paper's
    figure 3, the first block is on top and the next ones below it. Within a
    block the kernels run row by row, `columns` to a row. Each kernel is
    enlarged `scale` times by pixel repetition, and white lines of `gap`
    pixels separate and frame the kernels. Blocks are stacked with
    `tower_gap` more white rows between them. With k x k kernels, so
    c = min(columns, count / groups) columns and r = ceil(count / groups / c)
    rows per block, the image has:

        width = c * k * scale + (c + 1) * gap
        height = groups * (r * k * scale + (r + 1) * gap) + (groups - 1) * tower_gap

    Args:
        kernels: float array `(k, k, 3, count)`, a Keras Conv2D kernel.
        groups: number of blocks; must divide `count`.
        columns: kernels per row of a block, at most.
        scale: integer enlargement factor, at least 1.
        gap: width of the white lines around kernels, in pixels.
        tower_gap: white rows between blocks, in addition to their frames.
        contrast: `"per_kernel"` or `"global"`, see `scale_kernels`.

    Returns:
        A uint8 array `(height, width, 3)`.

    Raises:
        ValueError: if the kernels are not RGB or an argument is out of range.
    """
    kernels = np.asarray(kernels)
    if kernels.ndim != 4 or kernels.shape[2] != 3:
        raise ValueError(
            "Expected RGB kernels of shape (height, width, 3, count), as conv1's kernel. "
            f"Received: shape {kernels.shape}"
        )
    count = kernels.shape[-1]
    if groups < 1 or count % groups:
        raise ValueError(
            f"Expected groups to divide the {count} kernels. Received: groups={groups}"
        )
    if columns < 1 or scale < 1 or gap < 0 or tower_gap < 0:
        raise ValueError(
            "Expected columns >= 1, scale >= 1, gap >= 0 and tower_gap >= 0. Received: "
            f"columns={columns}, scale={scale}, gap={gap}, tower_gap={tower_gap}"
        )

    tiles = scale_kernels(kernels, contrast)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    columns = min(columns, count // groups)
    blocks = [_tile_block(block, columns, gap) for block in np.split(tiles, groups)]

    separator = np.full((tower_gap, blocks[0].shape[1], 3), 255, np.uint8)
    parts = [blocks[0]]
    for block in blocks[1:]:
        parts.extend([separator, block])
    return np.concatenate(parts, axis=0)


def conv1_kernels(model):
    """Returns conv1's kernel as NumPy and the number of groups of conv2.

    Args:
        model: a Keras model with a convolution layer named "conv1". Its
            kernels feed conv2 in `conv2.groups` groups; a model without a
            layer "conv2", or whose conv2 has no `groups`, counts as 1 group.

    Returns:
        `(kernels, groups)`: a float32 array `(height, width, 3, count)` and an int.

    Raises:
        ValueError: if the model has no layer named "conv1".
    """
    layer_names = [layer.name for layer in model.layers]
    if "conv1" not in layer_names:
        raise ValueError(
            f"Model {model.name!r} has no layer named 'conv1', whose kernels the figure "
            f"shows. Its layers: {layer_names}"
        )
    kernels = keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)
    groups = 1
    if "conv2" in layer_names:
        groups = getattr(model.get_layer("conv2"), "groups", 1)
    return kernels, groups


def conv1_kernel_grid(model, **grid_kwargs):
    """Draws `kernel_grid` of the model's conv1, one block per group of conv2.

    Args:
        model: a Keras model with a layer named "conv1", see `conv1_kernels`.
        **grid_kwargs: further arguments of `kernel_grid`, except `groups`.

    Returns:
        A uint8 array `(height, width, 3)`.
    """
    kernels, groups = conv1_kernels(model)
    return kernel_grid(kernels, groups=groups, **grid_kwargs)
