"""A pretrained classifier from an exporter other than PyTorch: a Keras MobileNetV2 (or
MobileNetV3-Small), trained here in Keras on a Fashion-MNIST slice written as an image folder,
exported by tf2onnx (channels-last NHWC input, as Keras has it), with the accuracy onnxruntime
itself gives on the folder's test images. cnnlab's `eval` on the same folder must print the same
figure (issue 26). Python is only the measuring stick: nothing in cnnlab runs it.

Needs tensorflow-cpu (2.21), tf2onnx, onnxruntime, onnx, numpy, pillow, and Fashion-MNIST's IDX
files (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist). tf2onnx 1.17 (pure
Python; here from its repository, onnx/tensorflow-onnx at 6537fcb, put on the venv's path)
converts a Keras 3 model through `tf2onnx.convert.from_function` on the model's call.

    python bench/export-keras.py --out /tmp/keras-fmnist            # MobileNetV2 0.35, 96x128, 10 classes
    npx cnnlab eval /tmp/keras-fmnist/model.onnx --data-dir /tmp/keras-fmnist/data \
        --input-size 96x128 --normalize 0.5,0.5                     # the accuracy in accuracy.json
    python bench/export-keras.py --check MODEL.onnx --data-dir DIR --normalize 0.5,0.5
                                                                     # onnxruntime's accuracy of any model on a folder

The model's own normalisation is MobileNet's `x / 127.5 - 1` on 0..255 pixels, outside the
model, i.e. cnnlab's `--normalize 0.5,0.5` on 0..1 pixels. The images are PNGs at exactly the
model's input size (Fashion-MNIST's 28x28 grey resized once here, bilinear, made RGB), so the
pixels onnxruntime sees here are the ones cnnlab reads.

`--fixture DIR` writes a small committed fixture of test/exporters.test.ts instead: a narrow
model at a small size, a few images of three classes, onnxruntime's outputs and accuracy. The two
in test/fixtures/exporters/ (about 20 s each on two cores):

    python bench/export-keras.py --fixture test/fixtures/exporters --family mobilenet_v2 --alpha 0.1 \
        --size 32x48 --classes 3 --train-per-class 150 --test-per-class 20 --epochs 12
    python bench/export-keras.py --fixture test/fixtures/exporters --family mobilenet_v3_small --alpha 0.1 \
        --size 32x48 --classes 3 --train-per-class 150 --test-per-class 20 --epochs 12
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

FMNIST = '/usr/share/datasets/fashion-mnist'
CLASS_NAMES = ['tshirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot']


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_slice(split, per_class, classes):
    """The first `per_class` images of each of the first `classes` classes of a split, in file order."""
    prefix = 'train' if split == 'train' else 't10k'
    images = read_idx(os.path.join(FMNIST, f'{prefix}-images-idx3-ubyte.gz'))
    labels = read_idx(os.path.join(FMNIST, f'{prefix}-labels-idx1-ubyte.gz'))
    picked = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(classes)])
    picked.sort()
    return images[picked], labels[picked]


def to_rgb(images, h, w):
    """28x28 grey images resized to h x w (bilinear) as uint8 RGB [N, h, w, 3]."""
    from PIL import Image
    out = np.empty((len(images), h, w, 3), np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im, 'L').resize((w, h), Image.BILINEAR).convert('RGB'))
    return out


def write_folder(root, split, images, labels, names):
    """DIR/<split>/<class>/<index>.png, cnnlab's (and torchvision's ImageFolder's) layout."""
    from PIL import Image
    for i, (im, y) in enumerate(zip(images, labels)):
        d = os.path.join(root, split, names[y])
        os.makedirs(d, exist_ok=True)
        Image.fromarray(im, 'RGB').save(os.path.join(d, f'{i:05d}.png'))


def read_folder(root, split):
    """A folder's split as uint8 [N, H, W, 3] and labels, classes in sorted order (as cnnlab reads it)."""
    from PIL import Image
    classes = sorted(d for d in os.listdir(os.path.join(root, 'train')) if not d.startswith('.'))
    images, labels = [], []
    for k, c in enumerate(classes):
        d = os.path.join(root, split, c)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            images.append(np.asarray(Image.open(os.path.join(d, f)).convert('RGB')))
            labels.append(k)
    return np.stack(images), np.array(labels), classes


def normalise(images, mean, std):
    """0..255 uint8 -> float32 as cnnlab feeds it: pixels / 255 in float32, then (x - mean) / std in double, stored as float32."""
    x = (images.astype(np.float32) / np.float32(255)).astype(np.float64)
    return ((x - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)).astype(np.float32)


def ort_accuracy(path, images, labels, mean, std, batch=64):
    """onnxruntime's (correct, total) on NHWC or NCHW uint8 images, and the outputs."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    inp = sess.get_inputs()[0]
    channels_last = inp.shape[-1] == 3
    x = normalise(images, mean, std)
    if not channels_last:
        x = x.transpose(0, 3, 1, 2)
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    outs = []
    for s in range(0, len(x), fixed or batch):
        chunk = x[s:s + (fixed or batch)]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n,) + chunk.shape[1:], np.float32)])
        outs.append(sess.run(None, {inp.name: chunk})[0][:n])
    y = np.concatenate(outs)
    return int((y.argmax(1) == labels).sum()), len(labels), y


def build(family, h, w, alpha, classes):
    """A keras.applications model at h x w x 3 without pretrained weights, softmax head, no preprocessing inside."""
    import keras
    shape = (h, w, 3)
    if family == 'mobilenet_v2':
        return keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, weights=None, classes=classes)
    if family == 'mobilenet_v3_small':
        return keras.applications.MobileNetV3Small(input_shape=shape, alpha=alpha, weights=None, classes=classes,
                                                   include_preprocessing=False, dropout_rate=0.0)
    raise SystemExit(f'--family: expected mobilenet_v2 or mobilenet_v3_small, got {family}')


def set_bn_momentum(model, momentum):
    """Every BatchNormalization layer's moving-average momentum (Keras reads it at each training call)."""
    import keras
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def recalibrate(model, x, batch=250):
    """The BatchNorm moving statistics measured afresh on `x` (training-mode forward, cumulative average).

    Keras' momentum 0.999 (MobileNetV2) trails a network trained from scratch for a few hundred
    steps so far that its inference outputs are constant (10% on 10 classes, measured); the
    statistics of the training images fix that without touching a weight."""
    chunks = [x[s:s + batch] for s in range(0, len(x), batch)]
    for k, chunk in enumerate(chunks):
        set_bn_momentum(model, k / (k + 1))
        model(chunk, training=True)
    set_bn_momentum(model, 0.999)


def export_onnx(model, path, h, w, opset):
    """tf2onnx of the model's inference call, input 'input' [N, h, w, 3] (batch symbolic), output 'output'."""
    import tensorflow as tf
    import tf2onnx
    spec = (tf.TensorSpec((None, h, w, 3), tf.float32, name='input'),)

    @tf.function(input_signature=spec)
    def serve(x):
        return {'output': model(x, training=False)}

    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=path)


def train_and_export(args):
    import keras
    import tensorflow as tf
    h, w = args.size
    tf.random.set_seed(args.seed)
    keras.utils.set_random_seed(args.seed)
    names = CLASS_NAMES[:args.classes]
    xs, ys = fashion_slice('train', args.train_per_class, args.classes)
    xt, yt = fashion_slice('test', args.test_per_class, args.classes)
    data = os.path.join(args.out, 'data')
    write_folder(data, 'train', to_rgb(xs, h, w), ys, names)
    write_folder(data, 'test', to_rgb(xt, h, w), yt, names)
    # Read back as cnnlab will: sorted class folders, PNG pixels.
    train_x, train_y, classes = read_folder(data, 'train')
    test_x, test_y, _ = read_folder(data, 'test')
    mean, std = args.normalize
    model = build(args.family, h, w, args.alpha, len(classes))
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    t0 = time.time()
    model.fit(normalise(train_x, mean, std), train_y, batch_size=args.batch, epochs=args.epochs, shuffle=True, verbose=2,
              validation_data=(normalise(test_x, mean, std), test_y))
    recalibrate(model, normalise(train_x, mean, std))
    train_s = time.time() - t0
    keras_acc = float((model.predict(normalise(test_x, mean, std), verbose=0).argmax(1) == test_y).mean())
    path = os.path.join(args.out, 'model.onnx')
    export_onnx(model, path, h, w, args.opset)
    correct, total, _ = ort_accuracy(path, test_x, test_y, mean, std)
    report = {'family': args.family, 'alpha': args.alpha, 'input_size': f'{h}x{w}', 'normalize': f'{mean},{std}',
              'classes': classes, 'train_images': len(train_y), 'test_images': total, 'epochs': args.epochs,
              'train_seconds': round(train_s, 1), 'keras_accuracy': keras_acc,
              'onnxruntime_correct': correct, 'onnxruntime_accuracy': correct / total, 'opset': args.opset,
              'params': int(model.count_params())}
    with open(os.path.join(args.out, 'accuracy.json'), 'w') as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))


def lcg_images(n, h, w, seed):
    """Deterministic uint8 RGB images from the LCG test/families.test.ts uses (s -> 1664525 s + 1013904223 mod 2^32, byte s >> 24)."""
    s = seed
    out = np.empty(n * h * w * 3, np.uint8)
    for i in range(out.size):
        s = (1664525 * s + 1013904223) % 2 ** 32
        out[i] = s >> 24
    return out.reshape(n, h, w, 3)


def fixture(args):
    """The committed fixture: a small trained model, a few images of each split (PNG), onnxruntime's outputs and accuracy."""
    import keras
    import tensorflow as tf
    h, w = args.size
    keras.utils.set_random_seed(args.seed)
    tf.random.set_seed(args.seed)
    names = CLASS_NAMES[:args.classes]
    # Labels in the folder's order (sorted class names), as cnnlab reads them.
    order = np.array([sorted(names).index(n) for n in names])
    xs, ys = fashion_slice('train', args.train_per_class, args.classes)
    xt, yt = fashion_slice('test', args.test_per_class, args.classes)
    train_x, test_x = to_rgb(xs, h, w), to_rgb(xt, h, w)
    mean, std = args.normalize
    model = build(args.family, h, w, args.alpha, args.classes)
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    model.fit(normalise(train_x, mean, std), order[ys], batch_size=args.batch, epochs=args.epochs, shuffle=True, verbose=2)
    recalibrate(model, normalise(train_x, mean, std))
    os.makedirs(args.fixture, exist_ok=True)
    name = f'keras_{args.family}'
    path = os.path.join(args.fixture, f'{name}.onnx')
    export_onnx(model, path, h, w, args.opset)
    # The fixtures of one class count and size share their images (the same PNGs either way).
    folder = f'fashion{args.classes}_{h}x{w}'
    data = os.path.join(args.fixture, folder)
    # The folder's train split holds a few training images (a folder needs one; the test reads test/).
    few = np.concatenate([np.flatnonzero(ys == k)[:4] for k in range(args.classes)])
    write_folder(data, 'train', train_x[few], ys[few], names)
    write_folder(data, 'test', test_x, yt, names)
    write_facts(args, name, path, data, mean, std, {'family': args.family, 'alpha': args.alpha, 'input_size': [h, w], 'normalize': [mean, std], 'data': folder, 'opset': args.opset},
                exporter=f'tf2onnx {__import__("tf2onnx").__version__} (from_function), TensorFlow {tf.__version__}, Keras {keras.__version__}',
                made_by=f'bench/export-keras.py --fixture test/fixtures/exporters --family {args.family} --alpha {args.alpha} --size {h}x{w} '
                        f'--classes {args.classes} --train-per-class {args.train_per_class} --test-per-class {args.test_per_class} --epochs {args.epochs}')


def write_facts(args, name, path, data, mean, std, facts, exporter, made_by, extra=lambda images, labels: {}):
    """A fixture's JSON beside it: onnxruntime's correct count on the folder's test images, its output for two LCG images, how it was made."""
    h, w = args.size
    test_x, test_y, classes = read_folder(data, 'test')
    correct, total, _ = ort_accuracy(path, test_x, test_y, mean, std)
    _, _, y = ort_accuracy(path, lcg_images(2, h, w, 1), np.zeros(2, np.int64), mean, std)
    facts = {**facts, 'classes': classes, **extra(test_x, test_y), 'onnxruntime_correct': correct, 'test_images': total,
             'example': {'seed': 1, 'count': 2, 'pixels': 'uint8 [N, H, W, 3] from the LCG, byte = s >> 24, normalised as cnnlab does'},
             'expected_output': y.tolist(), 'tolerance': 1e-4, 'exporter': exporter, 'made_by': made_by}
    with open(os.path.join(args.fixture, f'{name}.json'), 'w') as f:
        json.dump(facts, f, indent=1)
    print(json.dumps({k: v for k, v in facts.items() if k != 'expected_output'}), os.path.getsize(path), 'bytes')


def check(args):
    """onnxruntime's accuracy of MODEL on DIR's test split (cnnlab's pixels and normalisation)."""
    x, y, classes = read_folder(args.data_dir, 'test')
    mean, std = args.normalize
    correct, total, _ = ort_accuracy(args.check, x, y, mean, std)
    print(json.dumps({'model': args.check, 'correct': correct, 'total': total, 'accuracy': correct / total, 'classes': classes}))


def parse_normalize(text):
    """cnnlab's --normalize: 'MEAN,STD' (every channel), or 'M1,M2,M3/S1,S2,S3' (per channel)."""
    if '/' in text:
        mean, std = text.split('/')
        return [float(v) for v in mean.split(',')], [float(v) for v in std.split(',')]
    mean, std = text.split(',')
    return float(mean), float(std)


def training_args(p, size, classes, train_per_class, test_per_class, epochs, lr):
    """The options every exporter script here shares: the image size, the Fashion-MNIST slice and the training run."""
    p.add_argument('--size', default=size, type=lambda s: tuple(int(v) for v in s.split('x')))
    p.add_argument('--classes', type=int, default=classes)
    p.add_argument('--train-per-class', type=int, default=train_per_class)
    p.add_argument('--test-per-class', type=int, default=test_per_class)
    p.add_argument('--epochs', type=int, default=epochs)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--lr', type=float, default=lr)
    p.add_argument('--seed', type=int, default=0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='/tmp/keras-fmnist')
    p.add_argument('--family', default='mobilenet_v2')
    p.add_argument('--alpha', type=float, default=0.35)
    training_args(p, size='96x128', classes=10, train_per_class=200, test_per_class=50, epochs=6, lr=2e-3)
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--normalize', default='0.5,0.5', type=parse_normalize)
    p.add_argument('--fixture', help='write the small committed fixture into this folder instead')
    p.add_argument('--check', help='an ONNX model: print onnxruntime\'s accuracy on --data-dir')
    p.add_argument('--data-dir')
    args = p.parse_args()
    if args.check:
        return check(args)
    if args.fixture:
        return fixture(args)
    return train_and_export(args)


if __name__ == '__main__':
    sys.exit(main())
