# Set-up, demo and tests. Every target installs what it needs and can run again.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# apt-get needs root; use sudo when not running as root.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
FASHION_MNIST_CLASSES := T-shirt_top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle_boot
DEMO_DATA_DIR := data/fashion_mnist
DEMO_MODEL_DIR := runs/demo

.PHONY: install system-packages demo test clean

install: $(VENV)/.installed

# python3-venv provides ensurepip on Debian; dataset-fashion-mnist the demo's
# and the real-data tests' images.
system-packages:
	@missing=""; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	[ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $@

demo: install
	$(BIN)/python -m alexnet_tf.idx_to_folders --idx_dir=$(FASHION_MNIST_DIR) \
		--output_dir=$(DEMO_DATA_DIR) --class_names=$(FASHION_MNIST_CLASSES)
	$(BIN)/python -m alexnet_tf.train --flagfile=flags/demo.cfg \
		--data_dir=$(DEMO_DATA_DIR) --model_dir=$(DEMO_MODEL_DIR)
	cat $(DEMO_MODEL_DIR)/eval_results.json
	$(BIN)/python -m alexnet_tf.predict --saved_model=$(DEMO_MODEL_DIR)/export \
		$$(find $(DEMO_DATA_DIR)/validation -name '*.png' | sort | awk 'NR % 1000 == 1')

test: install
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) $(DEMO_DATA_DIR) $(DEMO_MODEL_DIR) .pytest_cache

# The input-pipeline comparison with torchvision, described in bench/README.md.
# torch is never a test dependency, so it gets a venv of its own (about 8 GB).
.PHONY: bench
bench:
	[ -f bench/.venv/.installed ] || { $(PYTHON) -m venv bench/.venv && \
		bench/.venv/bin/pip install --upgrade pip && \
		bench/.venv/bin/pip install -e '.[test,bench]' && touch bench/.venv/.installed; }
	bench/.venv/bin/python bench/make_jpeg_tree.py --output_dir=data/bench_jpeg_tree
	bench/.venv/bin/python bench/input_vs_torchvision.py --data_dir=data/bench_jpeg_tree \
		--tfrecord_dir=data/bench_jpeg_tree_tfrecords --profile --max_other_load=0.3
