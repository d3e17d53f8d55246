"""Data sources and the input pipeline.

Every source (`image_folder`, `tfrecords`, `tfds_source`) turns one split into
a `records.Source`: a stream of encoded images with labels and names.
`input_pipeline` then checks, decodes, augments and batches those records the
same way whatever their source. `build_tfrecords` writes TFRecord shards from
a folder tree.
"""
