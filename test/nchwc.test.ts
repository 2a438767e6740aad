/**
 * The CPU EP's NCHWc convolutions in train steps and eval graphs (graph-builder/artifacts/nchwc.ts):
 * the block size read from onnxruntime, which Convs are rewritten, and that the rewritten graphs
 * compute what the CPU-kernel graph computes (the same sums in another order: float tolerance).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DATASETS } from '../datasets/registry.ts';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { buildEvalModel } from '../graph-builder/artifacts/eval.ts';
import { initialCheckpoint } from '../graph-builder/artifacts/compile.ts';
import { lowerConvsToNchwc, NCHWC_DOMAIN } from '../graph-builder/artifacts/nchwc.ts';
import { buildTrainStepModel } from '../graph-builder/artifacts/train-step.ts';
import { type Architecture, loadArchitecture, loadModelFile } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { attr, type Graph, GraphBuilder, type Node } from '../graph-builder/graph/ir.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { elementCount } from '../graph-builder/model.ts';
import * as ort from 'onnxruntime-node';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { createRuntime, nchwcBlockSize } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { stepBatch } from './helpers/step-batch.ts';
import { trainSpecFor } from '../training/optimizers/index.ts';

const mnist = await loadDataset('mnist', { env: {} });
const block = await nchwcBlockSize();
const noBlock = block ? undefined : `onnxruntime's CPU EP has no NCHWc kernels on this machine (${process.arch})`;


function trainStep(arch: Architecture, nchwcBlock?: number) {
  const spec = trainSpecFor(arch);
  return buildTrainStepModel(arch.model, { optimizer: defaultOptimizer('sgd', 0, true), loss: spec.loss, meta: modelMeta(arch, DATASETS.mnist), target: 'cpu', nchwcBlock });
}

/** The nodes of a train step's Loop body. */
function bodyNodes(bytes: Uint8Array): Node[] {
  const loop = decodeGraph(bytes).graph.nodes.find((n) => n.op === 'Loop')!;
  return (loop.attrs.body.value as Graph).nodes;
}

/** Worst difference of two runs' updates to the same starting tensors, relative to each tensor's largest update. */
function worstUpdateDiff(start: ReadonlyMap<string, { data: unknown }>, a: ReadonlyMap<string, { data: unknown }>, b: ReadonlyMap<string, { data: unknown }>): number {
  let worst = 0;
  for (const [name, t] of a) {
    if (!(t.data instanceof Float32Array)) continue;
    const [s0, x, y] = [start.get(name)!.data as Float32Array, t.data, b.get(name)!.data as Float32Array];
    let [gap, scale] = [0, 1e-12];
    for (let i = 0; i < x.length; i++) [gap, scale] = [Math.max(gap, Math.abs(x[i] - y[i])), Math.max(scale, Math.abs(x[i] - s0[i]))];
    worst = Math.max(worst, gap / scale);
  }
  return worst;
}

/** partC (Conv then ReLU), eva-best (8- to 20-channel convs, 1x1 convs, BatchNorm) and torchvision families from test/fixtures/families (depthwise, grouped, strided, 1x1, concatenating). */
const archs = async (): Promise<[string, Architecture][]> => [
  ['partC', await loadArchitecture('partC')],
  ['eva-best', await loadArchitecture('eva-best')],
  ...['mobilenet_v2', 'resnet18', 'shufflenet_v2', 'efficientnet_b0', 'densenet'].map((f): [string, Architecture] => [f, loadModelFile(join(import.meta.dirname, 'fixtures', 'families', `${f}.onnx`))]),
];

describe('NCHWc convolutions on the CPU EP', () => {
  it('the block size read from the CPU EP is 8 or 16 on x86-64', { skip: process.arch !== 'x64' && `${process.arch}: MLAS's block size is only known for x86-64` }, () => {
    assert.ok(block === 8 || block === 16, `block ${block}`);
  });

  it("reorders filters in the graph exactly as onnxruntime's optimiser reorders a constant filter (blocked input, NCHW input, depthwise; padded output channels)", { skip: noBlock }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-nchwc-test-'));
    try {
      for (const [cin, cout, group] of [[2 * block!, block! + 4, 1], [3, 5, 1], [block!, block!, block!]]) {
        const shape = [cout, cin / group, 3, 3];
        const filter = Float32Array.from({ length: elementCount(shape) }, (_, i) => Math.sin(i));
        const attrs = { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]), group: attr.int(group) };
        // onnxruntime's own rewrite of a Conv whose filter is a constant, saved after optimisation.
        const constant = new GraphBuilder('constant');
        constant.expose(constant.op('Conv', [constant.input('x', 'float32', [1, cin, 6, 6]), constant.constF(filter, shape)], attrs), 'y', 'float32');
        const file = join(dir, `${cin}-${cout}-${group}.onnx`);
        await (await ort.InferenceSession.create(encodeModel(constant.graph), { graphOptimizationLevel: 'all', optimizedModelFilePath: file, logSeverityLevel: 3 })).release();
        const optimised = decodeGraph(readFileSync(file)).graph;
        const theirConv = optimised.nodes.find((n) => n.op === 'Conv' && n.domain === NCHWC_DOMAIN)!;
        const theirs = optimised.initializers.find((t) => t.name === theirConv.inputs[1])!;
        // cnnlab's: the filter fed as an input, reordered by the graph; the reordered value exposed.
        const fed = new GraphBuilder('fed');
        fed.expose(fed.op('Conv', [fed.input('x', 'float32', [1, cin, 6, 6]), fed.input('w', 'float32', shape)], attrs), 'y', 'float32');
        lowerConvsToNchwc(fed, block!);
        const ours = fed.graph.nodes.find((n) => n.op === 'Conv' && n.domain === NCHWC_DOMAIN)!;
        fed.expose(ours.inputs[1], 'reordered', 'float32');
        const out = await (await ort.InferenceSession.create(encodeModel(fed.graph))).run({ x: new ort.Tensor('float32', new Float32Array(cin * 36), [1, cin, 6, 6]), w: new ort.Tensor('float32', filter, shape) });
        assert.deepEqual(out.reordered.dims, theirs.dims, `${cin}->${cout} group ${group}`);
        assert.deepEqual(out.reordered.data, theirs.data, `${cin}->${cout} group ${group}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rewritten, the train steps give the CPU-kernel graph its loss and updates to float tolerance, with every forward and input-gradient Conv of partC on the blocked kernels and its two ReLUs fused', { skip: noBlock }, async () => {
    const rt = await createRuntime({ ep: 'cpu', threads: 2 });
    for (const [name, arch] of await archs()) {
      const plain = trainStep(arch);
      const blocked = trainStep(arch, block);
      const nodes = bodyNodes(blocked.bytes);
      const rewritten = nodes.filter((n) => n.op === 'Conv' && n.domain === NCHWC_DOMAIN);
      assert.ok(rewritten.length > 0, `${name}: no Conv rewritten`);
      if (name === 'partC') {
        // Forward: both convs, ReLU fused; input gradient: the second conv's (the first's input is the image).
        assert.equal(nodes.filter((n) => n.op === 'Conv' && !n.domain).length, 0, `${name}: a Conv left on im2col`);
        assert.equal(rewritten.length, bodyNodes(plain.bytes).filter((n) => n.op === 'Conv').length);
        assert.equal(rewritten.filter((n) => n.attrs.activation?.value === 'Relu').length, 2);
      }
      if (name === 'mobilenet_v2') assert.ok(rewritten.some((n) => n.attrs.group?.kind === 'int' && n.attrs.group.value > 1), `${name}: no depthwise conv rewritten`);
      const params = initialCheckpoint(plain.iface, initParams(arch.model, 1), {});
      // Rounding's own effect: the CPU-kernel graph again, from parameters moved by 1e-6 of themselves.
      const nudged = initialCheckpoint(plain.iface, new Map([...initParams(arch.model, 1)].map(([k, v]) => [k, v.map((x, i) => x * (1 + 1e-6 * Math.sin(i)))])), {});
      const runners = [await StepRunner.create(rt, plain.bytes, plain.iface, params), await StepRunner.create(rt, blocked.bytes, blocked.iface, params), await StepRunner.create(rt, plain.bytes, plain.iface, nudged)];
      const [want, got] = await Promise.all(runners.map((r) => r.run(stepBatch(arch.model, 1, 8))));
      assert.ok(Math.abs(want.losses[0] - got.losses[0]) <= 1e-5 * Math.max(1, want.losses[0]), `${name}: loss ${want.losses[0]} vs ${got.losses[0]}`);
      // One step's updates, to 1e-3 of each tensor's update, or where rounding alone moves them more
      // (some of these small random-weight fixtures at 32x32, batch 8: MobileNetV2's updates move by
      // 2% when one conv's weights move by 1e-7 of themselves), to four times what it does there.
      const [mine, nudgedRun] = [runners[1].tensors(), runners[2].tensors()];
      const bound = Math.max(1e-3, 4 * worstUpdateDiff(params.tensors, runners[0].tensors(), nudgedRun));
      const diff = worstUpdateDiff(params.tensors, runners[0].tensors(), mine);
      assert.ok(diff <= bound, `${name}: updates differ by ${diff} of each tensor's update (bound ${bound})`);
      for (const r of runners) await r.release();
    }
  });

  it('rewritten, the eval graph gives the same loss sum, correct count and predictions', { skip: noBlock }, async () => {
    const rt = await createRuntime({ ep: 'cpu', threads: 2 });
    for (const name of ['partB', 'eva-best']) {
      const arch = await loadArchitecture(name);
      const spec = trainSpecFor(arch);
      const meta = modelMeta(arch, DATASETS.mnist);
      const params = initParams(arch.model, 3);
      const feeds: Record<string, InstanceType<typeof rt.ort.Tensor>> = {
        images: new rt.ort.Tensor('uint8', mnist.test.images.slice(0, 64 * 784), [64, 28, 28]),
        labels: new rt.ort.Tensor('uint8', mnist.test.labels.slice(0, 64), [64]),
      };
      for (const p of arch.model.params) feeds[p.name] = new rt.ort.Tensor('float32', params.get(p.name)!, p.shape);
      const [plain, blocked] = await Promise.all([undefined, block].map(async (b) => (await rt.createSession(buildEvalModel(arch.model, spec.loss, meta, b))).run(feeds)));
      const [l0, l1] = [(plain.loss_sum.data as Float32Array)[0], (blocked.loss_sum.data as Float32Array)[0]];
      assert.ok(Math.abs(l0 - l1) <= 1e-5 * Math.abs(l0), `${name}: loss sum ${l0} vs ${l1}`);
      assert.deepEqual(blocked.predicted.data, plain.predicted.data);
      assert.deepEqual(blocked.correct.data, plain.correct.data);
    }
  });
});
