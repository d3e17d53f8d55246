"""Tests that two workers on 127.0.0.1 read each image exactly once per pass.

Each worker is a process with its own TF_CONFIG under
MultiWorkerMirroredStrategy, reading the same folder tree through
`input_pipeline.distribute_dataset`.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

from absl.testing import absltest
import tensorflow as tf

import input_pipeline_test

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run by each worker: one evaluation pass and two training batches, with the
# labels each worker's replica saw written to OUTPUT.
_WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from alexnet_tf.data import image_folder, input_pipeline

    data_dir, output = sys.argv[1], sys.argv[2]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    source = image_folder.open_folder(data_dir, image_folder.TRAIN_SPLIT)
    kwargs = dict(image_size=67, resize_size=76, seed=4)

    def local_labels(batch):
        return [int(label) for result in strategy.experimental_local_results(batch)
                for label in result]

    evaluation = input_pipeline.distribute_dataset(strategy, source, 2, training=False, **kwargs)
    seen = {"evaluation": [label for _, batch in evaluation for label in local_labels(batch)]}
    training = iter(input_pipeline.distribute_dataset(strategy, source, 10, training=True, **kwargs))
    seen["training"] = [local_labels(next(training)[1]) for _ in range(2)]
    with open(output, "w") as file:
        json.dump(seen, file)
""")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class TwoWorkersTest(tf.test.TestCase):

    def test_each_image_read_once_per_pass(self):
        data_dir = self.create_tempdir().full_path
        paths = input_pipeline_test.write_photo_tree(data_dir)
        workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
        output_dir = self.create_tempdir().full_path

        processes = []
        for index in range(2):
            env = dict(os.environ)
            env["TF_CONFIG"] = json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            )
            env["PYTHONPATH"] = _REPOSITORY
            env["CUDA_VISIBLE_DEVICES"] = ""
            processes.append(subprocess.Popen(
                [sys.executable, "-c", _WORKER_SCRIPT, data_dir,
                 os.path.join(output_dir, f"{index}.json")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
        for process in processes:
            output, _ = process.communicate(timeout=300)
            self.assertEqual(process.returncode, 0, output[-3000:])

        seen = []
        for index in range(2):
            with open(os.path.join(output_dir, f"{index}.json")) as file:
                seen.append(json.load(file))

        # Each photo is its own class, so labels identify images.
        evaluated = seen[0]["evaluation"] + seen[1]["evaluation"]
        self.assertCountEqual(evaluated, range(len(paths)))
        self.assertNotEmpty(seen[0]["evaluation"])
        self.assertNotEmpty(seen[1]["evaluation"])
        # A training batch of 10 is 5 per worker. The two workers' shards are
        # disjoint, so their first batches share no image.
        first_batches = [set(worker["training"][0]) for worker in seen]
        for worker in seen:
            self.assertLen(worker["training"][0], 5)
        self.assertEmpty(first_batches[0] & first_batches[1])


if __name__ == "__main__":
    absltest.main()
