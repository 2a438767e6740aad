/**
 * cnnlab's own inference.onnx read back by cnnlab: an `image` input and two outputs, `logits` and
 * `probabilities` = Softmax(logits). Evaluated from its probabilities, trained from its logits.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { inspectModel } from '../inference/inspect.ts';
import { classify, loadInferenceModel, openModelSession } from '../inference/model.ts';
import { createRuntime } from '../runtime/ort.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');

const dir = mkdtempSync(join(tmpdir(), 'cnnlab-own-'));
const arch = await loadArchitecture('partA');
const file = join(dir, 'inference.onnx');
writeFileSync(file, buildInferenceModel(arch.model, initParams(arch.model, 1), { architecture: arch.id, dataset: 'mnist', classes: [...'0123456789'], mean: 0.1307, std: 0.3081 }));

describe("cnnlab's own inference.onnx", () => {
  it('without its metadata, eval reads the probabilities output, as it reads its own model', async () => {
    const bare = join(dir, 'bare.onnx');
    writeFileSync(bare, encodeModel(decodeGraph(readFileSync(file)).graph));
    const foreign = loadInferenceModel(bare);
    assert.equal(foreign.native, false);
    assert.deepEqual(foreign.output, { name: 'probabilities', kind: 'probabilities', from: 'graph' });
    const own = loadInferenceModel(file);
    assert.equal(own.native, true);
    const rt = await createRuntime({ ep: 'cpu', threads: 1 });
    const pixels = Float32Array.from({ length: 3 * 784 }, (_, i) => ((i * 37) % 256) / 255);
    const p = await classify(rt, await openModelSession(rt, foreign), foreign, pixels, 3);
    const q = await classify(rt, await openModelSession(rt, own), own, pixels, 3);
    for (let i = 0; i < q.length; i++) assert.ok(Math.abs(p[i] - q[i]) < 1e-6, `${i}: ${p[i]} vs ${q[i]}`);
  });

  it('inspect says it can be trained, from its logits', () => {
    const text = inspectModel(file);
    assert.match(text, /eval, predict, serve: yes \(10 classes\), cnnlab's own inference model/);
    assert.match(text, /train, fine-tune \(cnnlab train --model \S+inference\.onnx\): yes: 83,466 trainable parameters, .*cross-entropy on its logits/);
    const model = importOnnxModel(readFileSync(file), file);
    assert.equal(model.output, 'logits');
    assert.equal(model.outputKind, 'logits');
    assert.equal(model.classes, 10);
    // The probabilities' Softmax is left out of the train step: the loss takes the logits.
    assert.ok(!model.graph.nodes.some((n) => n.op === 'Softmax'));
  });

  it('train --model inference.onnx fine-tunes it, and eval reads the model it writes', () => {
    const run = join(dir, 'run');
    const flags = ['--epochs', '1', '--limit-train', '2000', '--batch', '50', '--val-split', '0', '--threads', '2'];
    const train = spawnSync(process.execPath, [CLI, 'train', '--model', file, ...flags, '--out', run], { encoding: 'utf8' });
    assert.equal(train.status, 0, train.stderr);
    assert.ok(existsSync(join(run, 'best.onnx')));
    const accuracy = (target: string) => {
      const r = spawnSync(process.execPath, [CLI, 'eval', target, '--json', '--misclassified', join(dir, 'wrong.png')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return (JSON.parse(r.stdout) as { accuracy: number }).accuracy;
    };
    const before = accuracy(file);
    const after = accuracy(run);
    assert.ok(after > 0.8 && after > before + 0.3, `accuracy ${before} before, ${after} after`);
  });
});
