import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { InputError } from '../common/errors.ts';
import { CARD_KEYS, cardEntries, type ModelCard, readModelCard, runCardEntries, writeModelCard } from '../graph-builder/artifacts/model-card.ts';
import { architectureFromMetadata } from '../graph-builder/dsl/arch.ts';
import type { Layer } from '../graph-builder/dsl/layers.ts';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';
import { loadInferenceModel } from '../inference/model.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'model-card');
const metadataOf = (file: string) => decodeGraph(readFileSync(join(FIXTURES, file))).metadata;

/** What every inference model cnnlab writes says: here, the fixture tiny-best.onnx's. */
const TINY: ModelCard = {
  architecture: 'file:tiny.json',
  dataset: 'folder:shapes',
  classes: ['circle', 'cross', 'square'],
  normalization: { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] },
  parameters: 113,
  input: 'image: float32 [N,3,8,8], pixels 0..1 (BGR planes), normalised inside the graph',
};

/** A card with every field set. */
const FULL: Required<ModelCard> = {
  ...TINY,
  preprocess: { range: 255, mean: 0.1307, std: 0.3081 },
  image: { channelOrder: 'bgr', resize: 'crop', size: [8, 8] },
  outputKind: 'log-probabilities',
  layers: [{ kind: 'relu' }, { kind: 'flatten' }],
  artifact: 'train_step',
  features: { cut: 'pool_out', shape: [2, 3, 3] },
  optimizer: { name: 'adamw', weightDecay: 0.01, momentum: false, nesterov: false, beta2: 0.999, eps: 1e-8, alpha: 0.99 },
  run: 'runs/tiny-shapes',
  testAccuracy: 0.6667,
  valAccuracy: 0.5,
  epoch: 3,
  fineTuned: 'in the demo page',
};

/** One malformed value per field. */
const MALFORMED: Record<keyof ModelCard, string | undefined> = {
  architecture: undefined, // any text is an architecture name
  dataset: undefined,
  input: undefined,
  run: undefined,
  fineTuned: undefined,
  classes: '["a",2]',
  normalization: '{"mean":"x","std":1}',
  parameters: '12.5',
  preprocess: '{"range":1,"mean":[1,2,3],"std":[4,0,6]}',
  image: '{"channelOrder":"grb"}',
  outputKind: 'scores',
  layers: '{"kind":"relu"}',
  artifact: 'inference',
  features: '{"cut":"x","shape":[0]}',
  optimizer: '{"name":"sgd"}',
  testAccuracy: '1.5',
  valAccuracy: 'high',
  epoch: '-1',
};

describe('model card codec', () => {
  it('writes every field under its own key and reads each back as written', () => {
    const md = writeModelCard(FULL);
    assert.deepEqual(Object.keys(md), Object.values(CARD_KEYS));
    assert.deepEqual(readModelCard(md, 'm.onnx'), FULL);
  });

  it('writes the value formats earlier builds wrote (accuracies to 4 decimals, JSON lists and objects)', () => {
    const md = writeModelCard({ classes: ['a'], parameters: 5, testAccuracy: 2 / 3, valAccuracy: 0.5, epoch: 2, image: { channelOrder: 'bgr' } });
    assert.deepEqual(md, { 'cnnlab.classes': '["a"]', 'cnnlab.parameters': '5', 'cnnlab.image': '{"channelOrder":"bgr"}', 'cnnlab.test_accuracy': '0.6667', 'cnnlab.val_accuracy': '0.5000', 'cnnlab.epoch': '2' });
  });

  it('runCardEntries leaves out a validation accuracy the run did not measure', () => {
    assert.deepEqual(runCardEntries({ run: 'runs/a', testAccuracy: 0.98765, epoch: 4 }), { 'cnnlab.run': 'runs/a', 'cnnlab.test_accuracy': '0.9877', 'cnnlab.epoch': '4' });
  });

  it('reads an accuracy written as NaN (an empty split) back as NaN', () => {
    assert.ok(Number.isNaN(readModelCard(writeModelCard({ valAccuracy: NaN }), 'm.onnx').valAccuracy));
  });

  it('reads a model without cnnlab metadata as an empty card', () => {
    assert.deepEqual(readModelCard({ producer: 'pytorch' }, 'm.onnx'), {});
  });

  it('rejects each malformed field with one InputError line naming the file, the key, what was expected and what was found', () => {
    for (const [field, bad] of Object.entries(MALFORMED)) {
      if (bad === undefined) continue;
      const key = CARD_KEYS[field as keyof ModelCard];
      assert.throws(
        () => readModelCard({ ...writeModelCard(FULL), [key]: bad }, 'dir/m.onnx'),
        (err: Error) => {
          assert.ok(err instanceof InputError, `${key}: ${err.name}`);
          assert.ok(err.message.startsWith(`dir/m.onnx: metadata ${key} is not `), err.message);
          assert.ok(err.message.endsWith(`; found ${JSON.stringify(bad)}`), err.message);
          assert.ok(!err.message.includes('\n'), err.message);
          return true;
        },
      );
    }
  });

  it('shows a long malformed value cut to 60 characters', () => {
    assert.throws(() => readModelCard({ 'cnnlab.classes': 'x'.repeat(500) }, 'm.onnx'), /found "x{60}\.\.\."$/);
  });

  it('architectureFromMetadata rebuilds an architecture-file model from the layers its card carries', () => {
    const layers = [{ kind: 'conv2d', inChannels: 1, outChannels: 4, kernel: 3 }, { kind: 'relu' }, { kind: 'flatten' }, { kind: 'linear', inFeatures: 2704, outFeatures: 3 }] as ModelCard['layers'];
    const arch = architectureFromMetadata(writeModelCard({ architecture: 'file:net.json', classes: ['a', 'b', 'c'], layers }), 'm.onnx');
    assert.deepEqual([arch?.id, arch?.model.trainableCount], ['file:net.json', 40 + 2704 * 3 + 3]);
  });

  it('cardEntries keeps the cnnlab entries, unknown ones too, without those left out', () => {
    assert.deepEqual(cardEntries({ 'cnnlab.architecture': 'a', 'cnnlab.layers': '[]', 'cnnlab.future': 'f', producer: 'p' }, ['layers']), { 'cnnlab.architecture': 'a', 'cnnlab.future': 'f' });
  });
});

describe('models written by the build before the codec (test/fixtures/model-card, made by make.ts)', () => {
  it('read as the card that build wrote: an architecture-file model, its train step and an imported model', () => {
    const tiny = readModelCard(metadataOf('tiny-best.onnx'), 'tiny-best.onnx');
    assert.deepEqual({ ...tiny, layers: (tiny.layers as Layer[] | undefined)?.map((l) => l.kind) }, {
      ...TINY,
      image: { channelOrder: 'bgr', resize: 'crop' },
      layers: ['conv2d', 'relu', 'maxPool2d', 'flatten', 'linear'],
      run: 'runs/tiny-shapes',
      testAccuracy: 0.6667,
      valAccuracy: 0.5,
      epoch: 3,
    });
    const step = readModelCard(metadataOf('tiny-train-step.onnx'), 'tiny-train-step.onnx');
    assert.equal(step.artifact, 'train_step');
    assert.deepEqual(step.optimizer, { name: 'adamw', weightDecay: 0.01, momentum: false, nesterov: false, beta2: 0.999, eps: 1e-8, alpha: 0.99 });
    const imported = readModelCard(metadataOf('imported-best.onnx'), 'imported-best.onnx');
    assert.deepEqual([imported.preprocess, imported.image, imported.outputKind, imported.testAccuracy, imported.epoch], [{ range: 255, mean: 0.1307, std: 0.3081 }, { size: [28, 28] }, 'logits', 0.9871, 2]);
  });

  it('load for predict, eval and serve as before: classes, accuracy, conversion, preparation', () => {
    const tiny = loadInferenceModel(join(FIXTURES, 'tiny-best.onnx'));
    assert.deepEqual([tiny.native, tiny.architecture, tiny.dataset, tiny.classes, tiny.parameters, tiny.testAccuracy, tiny.conversion], [true, 'file:tiny.json', 'folder:shapes', ['circle', 'cross', 'square'], 113, 0.6667, { channelOrder: 'bgr', resize: 'crop' }]);
    const imported = loadInferenceModel(join(FIXTURES, 'imported-best.onnx'));
    assert.deepEqual([imported.native, imported.classes.length, imported.preparation, imported.output.kind, imported.input.shape], [false, 10, { range: 255, mean: 0.1307, std: 0.3081, from: 'metadata' }, 'logits', [1, 28, 28]]);
  });

  it('are written the same by this build (the imported model byte for byte), but for the architecture file input the tiny model layers now carry (3x8x8), which rebuilds it at that input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-card-'));
    try {
      const made = spawnSync(process.execPath, ['--import', 'tsx', join(FIXTURES, 'make.ts'), join(import.meta.dirname, '..'), dir], { encoding: 'utf8' });
      assert.equal(made.status, 0, made.stderr);
      assert.ok(readFileSync(join(dir, 'imported-best.onnx')).equals(readFileSync(join(FIXTURES, 'imported-best.onnx'))), 'imported-best.onnx differs');
      const layers = CARD_KEYS.layers;
      for (const f of ['tiny-best.onnx', 'tiny-train-step.onnx']) {
        const [before, now] = [decodeGraph(readFileSync(join(FIXTURES, f))), decodeGraph(readFileSync(join(dir, f)))];
        assert.deepEqual(now.graph, before.graph, `${f}: the graph`);
        assert.deepEqual({ ...now.metadata, [layers]: '' }, { ...before.metadata, [layers]: '' }, `${f}: the metadata`);
        assert.deepEqual(JSON.parse(now.metadata[layers]), { input: [3, 8, 8], layers: JSON.parse(before.metadata[layers]) }, `${f}: the layers`);
        assert.deepEqual(architectureFromMetadata(now.metadata, f)?.model.inputShape, [3, 8, 8]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
