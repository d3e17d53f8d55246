"""AlexNet (Krizhevsky, Sutskever and Hinton, NIPS 2012) in TensorFlow 2 and Keras 3.

The modules follow the data flow: `image_folder` and `input_pipeline` read
images, `preprocessing` decodes and augments them, `layers` and `model` define
the network, `optimizer`, `training` and `callbacks` train it, and `serving`
exports it. `train`, `export`, `predict` and `idx_to_folders` are the
command-line entry points.
"""

__version__ = "0.1.0"
