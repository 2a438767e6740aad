"""A classifier from a second exporter other than PyTorch: a small Flax NNX CNN (BatchNorm, a
residual block, a depthwise conv, SiLU, global mean, Dropout, Dense), trained here in JAX with
optax on the Fashion-MNIST images of bench/export-keras.py's fixture folder, exported by jax2onnx
(channels-last input with a symbolic batch), with onnxruntime's outputs and accuracy. Its own
normalisation is per channel, ImageNet's: cnnlab's
`--normalize 0.485,0.456,0.406/0.229,0.224,0.225`. Python is only the measuring stick.

Needs jax, flax, optax, onnx, onnx-ir, onnxruntime, numpy, pillow and jax2onnx (0.16; here from
its repository, enpasos/jax2onnx at 3901899, put on the venv's path), plus Fashion-MNIST's IDX
files (Debian's dataset-fashion-mnist):

    python bench/export-jax.py --fixture test/fixtures/exporters --size 32x48 --classes 3 \\
        --train-per-class 150 --test-per-class 20 --epochs 15

writes jax_flax_cnn.onnx and .json beside the Keras fixtures, and the shared image folder
fashion3_32x48/ (the same PNGs bench/export-keras.py writes).
"""

import argparse
import importlib.util
import json
import os
import sys

import numpy as np

_spec = importlib.util.spec_from_file_location('export_keras', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'export-keras.py'))
ek = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ek)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def make_model(classes, seed):
    """The Flax NNX network, NHWC as Flax has it. BatchNorm's momentum is 0.9: Flax's 0.99 trails a
    couple of hundred steps from scratch (40% test accuracy on 3 classes, where 0.9 gives the
    training's own figure)."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.stem = nnx.Conv(3, 16, (3, 3), strides=(2, 2), padding='SAME', use_bias=False, rngs=rngs)
            self.bn1 = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
            self.conv2 = nnx.Conv(16, 16, (3, 3), padding='SAME', rngs=rngs)
            self.bn2 = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
            self.depthwise = nnx.Conv(16, 16, (3, 3), strides=(2, 2), padding='SAME', feature_group_count=16, rngs=rngs)
            self.pointwise = nnx.Conv(16, 32, (1, 1), rngs=rngs)
            self.bn3 = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
            self.dropout = nnx.Dropout(0.2, rngs=rngs)
            self.head = nnx.Linear(32, classes, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn1(self.stem(x)))
            x = x + nnx.relu(self.bn2(self.conv2(x)))
            x = nnx.silu(self.bn3(self.pointwise(self.depthwise(x))))
            x = x.mean(axis=(1, 2))
            return self.head(self.dropout(x))

    return Net(nnx.Rngs(seed))


def train(model, x, y, epochs, lr, batch, seed):
    """Adam on cross-entropy, shuffled minibatches; the model ends in eval mode (running statistics, no dropout)."""
    import jax
    import optax
    from flax import nnx
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb):
        def loss_fn(m):
            logits = m(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses = [float(step(model, optimizer, jax.numpy.asarray(x[order[s:s + batch]]), jax.numpy.asarray(y[order[s:s + batch]])))
                  for s in range(0, len(x), batch)]
        print(f'epoch {epoch + 1}/{epochs} loss {np.mean(losses):.4f}', flush=True)
    model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--fixture', required=True)
    ek.training_args(p, size='32x48', classes=3, train_per_class=150, test_per_class=20, epochs=15, lr=3e-3)
    args = p.parse_args()
    from jax2onnx import to_onnx
    h, w = args.size
    names = ek.CLASS_NAMES[:args.classes]
    order = np.array([sorted(names).index(n) for n in names])
    xs, ys = ek.fashion_slice('train', args.train_per_class, args.classes)
    xt, yt = ek.fashion_slice('test', args.test_per_class, args.classes)
    train_x, test_x = ek.to_rgb(xs, h, w), ek.to_rgb(xt, h, w)
    model = make_model(args.classes, args.seed)
    train(model, ek.normalise(train_x, MEAN, STD), order[ys], args.epochs, args.lr, args.batch, args.seed)
    name = 'jax_flax_cnn'
    path = os.path.join(args.fixture, f'{name}.onnx')
    os.makedirs(args.fixture, exist_ok=True)
    to_onnx(model, [('B', h, w, 3)], return_mode='file', output_path=path)
    folder = f'fashion{args.classes}_{h}x{w}'
    data = os.path.join(args.fixture, folder)
    if not os.path.isdir(data):
        few = np.concatenate([np.flatnonzero(ys == k)[:4] for k in range(args.classes)])
        ek.write_folder(data, 'train', train_x[few], ys[few], names)
        ek.write_folder(data, 'test', test_x, yt, names)
    import flax
    import jax
    ek.write_facts(args, name, path, data, MEAN, STD, {'family': 'flax_cnn', 'input_size': [h, w], 'normalize': [list(MEAN), list(STD)], 'data': folder},
                   exporter=f'jax2onnx 0.16.0, JAX {jax.__version__}, Flax {flax.__version__}',
                   made_by=f'bench/export-jax.py --fixture test/fixtures/exporters --size {h}x{w} --classes {args.classes} '
                           f'--train-per-class {args.train_per_class} --test-per-class {args.test_per_class} --epochs {args.epochs}',
                   extra=lambda images, labels: {'jax_correct': int((np.asarray(model(ek.normalise(images, MEAN, STD))).argmax(1) == labels).sum())})

if __name__ == '__main__':
    sys.exit(main())
