"""AlexNet (Krizhevsky, Sutskever and Hinton, NIPS 2012) in TensorFlow 2 and Keras 3.

The modules follow the data flow: the `data` package reads images from folder
trees, TFRecord shards and TensorFlow Datasets and feeds them through the
input pipeline, `preprocessing` decodes and augments them, `layers` and
`model` define the network, `optimizer`, `training` and `callbacks` train it,
and `serving` exports it. `train`, `export`, `predict`, `benchmark`,
`idx_to_folders` and `data.build_tfrecords` are the command-line entry points.
"""

__version__ = "0.1.0"
