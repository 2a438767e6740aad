/**
 * Which of cnnlab's graphs open and run on onnxruntime-node's WebGPU EP (docs/webgpu.md): for
 * each model, the inference graph, the eval graph and the train step (K steps of B images) are
 * opened with executionProviders ['webgpu', 'cpu'] and with ['cpu'], run on the same inputs,
 * and compared. Each (model, graph) runs in a child process at logSeverityLevel 0, so the
 * session's native log (on stderr) gives the node placement and the ops WebGPU has no kernel for.
 * Also prints the ops of every train step (Loop body included) with their input types.
 * Needs a Vulkan adapter (Mesa's lavapipe will do):
 *   export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m 700 $XDG_RUNTIME_DIR
 *   npx tsx bench/webgpu-probe.ts [--only partA] [--graph train] [--target portable|cpu] [--log DIR]
 *     [--cpu-pools] [--single] [--no-opt] [--nchw] [--int64]
 *   npx tsx bench/webgpu-probe.ts --kernels   (a max-pool gradient without Indices; grouped ConvTranspose)
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import type { GraphTarget } from '../graph-builder/autodiff/registry.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { attr, type DType, type Graph, GraphBuilder } from '../graph-builder/graph/ir.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { byteImageDims, type Model } from '../graph-builder/model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { feedsFor } from '../runtime/step-runner.ts';

const CASES = ['partA', 'eva-best', 'jhu-net:bn=bn-dropout', 'mobilenet_v2'];
const GRAPHS = ['inference', 'eval', 'train'] as const;
type GraphKind = (typeof GRAPHS)[number];
const META = { architecture: 'probe', dataset: 'probe', classes: [], mean: 0, std: 1 };
const [K, B] = [2, 4];

const { values } = parseArgs({
  options: { only: { type: 'string' }, graph: { type: 'string' }, target: { type: 'string', default: 'portable' }, child: { type: 'string' }, int64: { type: 'boolean', default: false }, 'cpu-pools': { type: 'boolean', default: false }, single: { type: 'boolean', default: false }, 'no-opt': { type: 'boolean', default: false }, kernels: { type: 'boolean', default: false }, nchw: { type: 'boolean', default: false }, log: { type: 'string', default: '/tmp/webgpu-probe' } },
});
const target = values.target as GraphTarget;

async function loadCase(name: string): Promise<Model> {
  if (name !== 'mobilenet_v2') return (await loadArchitecture(name)).model;
  const path = join(import.meta.dirname, '..', 'test', 'fixtures', 'families', 'mobilenet_v2.onnx');
  return importOnnxModel(readOnnxFile(path, readFileSync(path)).bytes, path);
}

/** The graph's bytes and one run's feeds (made-up pixels and labels, the initial parameters). */
function graphAndFeeds(model: Model, kind: GraphKind): { bytes: Uint8Array; feeds: Record<string, ort.Tensor> } {
  const built = compile(model, { optimizer: defaultOptimizer('sgd', 0.9, false), loss: model.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy', meta: META, target });
  const params = initParams(model, 1);
  const perImage = model.inputShape.reduce((a, d) => a * d, 1);
  const pixels = (n: number) => Uint8Array.from({ length: n * perImage }, (_, i) => (i * 7919) % 251);
  const labels = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % model.classes);
  if (kind === 'inference') {
    const x = Float32Array.from(pixels(B), (v) => v / 255);
    return { bytes: buildInferenceModel(model, params, META), feeds: { image: new ort.Tensor('float32', x, [B, ...model.inputShape]) } };
  }
  if (kind === 'eval') {
    const feeds: Record<string, ort.Tensor> = { images: new ort.Tensor('uint8', pixels(B), [B, ...byteImageDims(model)]), labels: new ort.Tensor('uint8', labels(B), [B]) };
    for (const p of model.params) feeds[p.name] = new ort.Tensor('float32', params.get(p.name)!, p.shape);
    return { bytes: built.eval, feeds };
  }
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of built.initialCheckpoint(params).tensors) feeds[name] = t.dtype === 'int64' ? new ort.Tensor('int64', t.data as BigInt64Array, t.dims) : new ort.Tensor('float32', t.data as Float32Array, t.dims);
  const inputs = { images: pixels(K * B), labels: labels(K * B), lr: new Float32Array(K).fill(0.01), momentum: new Float32Array(K).fill(0.9), dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)) };
  return { bytes: built.trainStep, feeds: { ...feeds, ...feedsFor(ort as never, built.iface.inputs, inputs, { K, B }) } };
}

/**
 * ['webgpu', 'cpu'] at log level 0. --no-opt: graphOptimizationLevel 'disabled' (every node is
 * looked up as emitted, none folded or fused away first); --cpu-pools: MaxPool nodes that output
 * Indices forced to the CPU EP (forceCpuNodeNames); --nchw: preferredLayout NCHW (default NHWC);
 * --int64: session config ep.webgpuexecutionprovider.enableInt64 = 1 (no effect in
 * onnxruntime-node 1.30: its int64 nodes still find no kernel, and the EP option is refused).
 */
function webgpuOptions(bytes: Uint8Array): ort.InferenceSession.SessionOptions {
  const names = (g: Graph): string[] => g.nodes.flatMap((n) => [...(n.op === 'MaxPool' && n.outputs.length > 1 ? [n.name] : []), ...Object.values(n.attrs).flatMap((a) => (a.kind === 'graph' ? names(a.value) : []))]);
  const ep = { name: 'webgpu', ...(values['cpu-pools'] && names(decodeGraph(bytes).graph).length ? { forceCpuNodeNames: names(decodeGraph(bytes).graph) } : {}), ...(values.nchw ? { preferredLayout: 'NCHW' } : {}) };
  return {
    executionProviders: [ep as ort.InferenceSession.ExecutionProviderConfig, 'cpu'],
    logSeverityLevel: 0,
    logVerbosityLevel: 0,
    ...(values['no-opt'] ? { graphOptimizationLevel: 'disabled' } : {}),
    ...(values.int64 ? { extra: { 'ep.webgpuexecutionprovider.enableInt64': '1' } } : {}),
  } as ort.InferenceSession.SessionOptions;
}

/**
 * The train step's Loop body as a graph of its own (one step, no Loop): the body's inputs plus
 * the outer inputs it reads (images, labels, ... as [1, ...]), its outputs in the body's order
 * (cond, the carried values in interface order, loss, correct).
 */
function singleStep(trainStep: Uint8Array): Uint8Array {
  const outer = decodeGraph(trainStep).graph;
  const loop = outer.nodes.find((n) => n.op === 'Loop')!;
  const body = (loop.attrs.body as { value: Graph }).value;
  const read = new Set(body.nodes.flatMap((n) => n.inputs));
  body.inputs.push(...outer.inputs.filter((i) => read.has(i.name) && !body.inputs.some((j) => j.name === i.name)));
  return encodeModel(body);
}

/**
 * --single: K runs of the one-step graph on ['webgpu', 'cpu'] with the carried tensors kept on
 * the GPU between runs (preferredOutputLocation 'gpu-buffer'), against the CPU EP's Loop graph on
 * the same K batches; prints one JSON line. (Tensor.getData() on a 'gpu-buffer' output aborts
 * onnxruntime-node 1.30's process, "terminate called after throwing an instance of 'char const*'",
 * so the check is the losses: each step's loss reads the parameters the step before it wrote.)
 */
async function childSingle(name: string): Promise<void> {
  const model = await loadCase(name);
  const built = compile(model, { optimizer: defaultOptimizer('sgd', 0.9, false), loss: model.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy', meta: META, target });
  const { bytes, feeds } = graphAndFeeds(model, 'train');
  const ref = await (await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], logSeverityLevel: 3 })).run(feeds);
  const one = singleStep(bytes);
  const g = decodeGraph(one).graph;
  const carriedOut = g.outputs.slice(1, 1 + built.iface.carried.length).map((o) => o.name);
  const onGpu = new Set(carriedOut);
  const result: Record<string, unknown> = { case: name, graph: 'single-step' };
  try {
    let t = performance.now();
    const opts = webgpuOptions(one);
    const session = await ort.InferenceSession.create(one, { ...opts, preferredOutputLocation: Object.fromEntries(g.outputs.map((o) => [o.name, onGpu.has(o.name) ? 'gpu-buffer' : 'cpu'])) } as ort.InferenceSession.SessionOptions);
    result.openS = +((performance.now() - t) / 1000).toFixed(2);
    const carried = new Map<string, ort.Tensor>(built.iface.carried.map((c) => [c.name, feeds[c.name]]));
    const losses: number[] = [];
    const stepS: number[] = [];
    for (let k = 0; k < K; k++) {
      const slice = (n: string) => {
        const t0 = feeds[n];
        const per = t0.size / K;
        return new ort.Tensor(t0.type as 'uint8', (t0.data as Uint8Array).slice(k * per, (k + 1) * per) as never, [1, ...t0.dims.slice(1)]);
      };
      const f: Record<string, ort.Tensor> = { iter: new ort.Tensor('int64', BigInt64Array.of(0n), []), cond_in: new ort.Tensor('bool', Uint8Array.of(1), []) };
      for (const i of g.inputs) if (!f[i.name]) f[i.name] = i.name.startsWith('body.') ? carried.get(i.name.slice(5))! : slice(i.name);
      t = performance.now();
      const out = await session.run(f);
      stepS.push(+((performance.now() - t) / 1000).toFixed(3));
      built.iface.carried.forEach((c, j) => carried.set(c.name, out[carriedOut[j]]));
      losses.push(+(out[g.outputs[g.outputs.length - 2].name].data as Float32Array)[0].toFixed(5));
    }
    result.carriedLocation = carried.get(built.iface.carried[1].name)!.location;
    Object.assign(result, { lossesCpuLoop: Array.from(ref.losses.data as Float32Array, (v) => +v.toFixed(5)), lossesWebgpuSingle: losses, stepS });
  } catch (err) {
    result.error = (err as Error).message;
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
}

/** Child: opens the graph on ['cpu'] and on ['webgpu', 'cpu'], runs both, prints one JSON line. */
async function child(name: string, kind: GraphKind): Promise<void> {
  const model = await loadCase(name);
  const { bytes, feeds } = graphAndFeeds(model, kind);
  const cpu = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], logSeverityLevel: 3 });
  const t0 = performance.now();
  const ref = await cpu.run(feeds);
  const result: Record<string, unknown> = { case: name, graph: kind, cpuRunS: +((performance.now() - t0) / 1000).toFixed(2) };
  try {
    let t = performance.now();
    const session = await ort.InferenceSession.create(bytes, webgpuOptions(bytes));
    result.openS = +((performance.now() - t) / 1000).toFixed(2);
    t = performance.now();
    const out = await session.run(feeds);
    result.runS = +((performance.now() - t) / 1000).toFixed(2);
    const worst: Record<string, number> = {};
    for (const [k, v] of Object.entries(ref)) {
      if (v.type !== 'float32') continue;
      const a = v.data as Float32Array;
      const b = out[k].data as Float32Array;
      worst[k] = Math.max(0, ...Array.from(a, (x, i) => Math.abs(x - b[i]) / Math.max(1, Math.abs(x))));
    }
    const show = (t: ort.Tensor) => Array.from(t.data as Float32Array).map((v) => +v.toFixed(5));
    if (kind === 'train') Object.assign(result, { lossesCpu: show(ref.losses), lossesWebgpu: show(out.losses), correctCpu: show(ref.correct), correctWebgpu: show(out.correct) });
    if (kind === 'eval') Object.assign(result, { lossCpu: show(ref.loss_sum), lossWebgpu: show(out.loss_sum) });
    const entries = Object.entries(worst).sort((a, b) => b[1] - a[1]);
    result.worstRelDiff = entries.slice(0, 3).map(([k, v]) => `${k}: ${v.toExponential(2)}`);
    await session.release();
  } catch (err) {
    result.error = (err as Error).message;
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
}

/** The session log's placement: nodes per EP, and the ops the WebGPU EP has no kernel for (by op type, with a count). */
function placement(log: string, sig: Map<string, string>): { placed: string[]; noKernel: Record<string, number>; cpuOps: Record<string, number> } {
  const placed = [...log.matchAll(/(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g)].map((m) => `${m[1].replace('ExecutionProvider', '')}: ${m[2]}`);
  const noKernel: Record<string, number> = {};
  const seen = new Set<string>();
  for (const m of log.matchAll(/webgpu kernel not found in registries for Op type: (\w+) node name: (\S+)/g)) {
    if (seen.has(m[2])) continue;
    seen.add(m[2]);
    const key = sig.get(m[2]) ?? `${m[1]}(?)`;
    noKernel[key] = (noKernel[key] ?? 0) + 1;
  }
  const cpuOps: Record<string, number> = {};
  let onCpu = false;
  for (const line of log.split('\n')) {
    const m = /placed on \[(\w+)\]/.exec(line);
    if (m) onCpu = m[1] === 'CPUExecutionProvider';
    else if (onCpu && /^\s+\w+ \(/.test(line.replace(/^.*\] /, ' '))) {
      const op = line.replace(/^.*\]\s+/, '').split(' ')[0].trim();
      if (op) cpuOps[op] = (cpuOps[op] ?? 0) + 1;
    } else if (!/^\s/.test(line.replace(/^.*VerifyEachNodeIsAssignedToAnEp\]/, ' '))) onCpu = false;
  }
  return { placed, noKernel, cpuOps };
}

/** Every op of a graph (subgraphs included) with the types of its inputs, from a forward pass over the declared types. */
function opTypes(g: Graph, types: Map<string, DType>, out: Map<string, Set<string>>, byName = new Map<string, string>()): Map<string, string> {
  for (const v of [...g.inputs, ...g.outputs]) types.set(v.name, v.dtype);
  for (const t of g.initializers) types.set(t.name, t.dtype);
  const ELEM: Record<number, DType> = { 1: 'float32', 2: 'uint8', 6: 'int32', 7: 'int64', 9: 'bool', 12: 'uint32' };
  for (const n of g.nodes) {
    const all = n.inputs.filter(Boolean).map((i) => types.get(i) ?? '?');
    const ins = all.length > 5 ? [...all.slice(0, 3), '...'] : all;
    const key = n.op;
    if (!out.has(key)) out.set(key, new Set());
    out.get(key)!.add(ins.join(','));
    byName.set(n.name, `${n.op}(${ins.join(',')})`);
    let t: DType | undefined;
    if (n.op === 'Cast') t = ELEM[(n.attrs.to as { value: number }).value];
    else if (n.op === 'Constant') t = (n.attrs.value as { value: { dtype: DType } }).value.dtype;
    else if (['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or'].includes(n.op)) t = 'bool';
    else if (['Shape', 'Size', 'ArgMax', 'ArgMin'].includes(n.op)) t = 'int64';
    else if (n.op === 'ConstantOfShape') t = n.attrs.value ? (n.attrs.value as { value: { dtype: DType } }).value.dtype : 'float32';
    else if (n.op === 'OneHot') t = types.get(n.inputs[2]);
    else if (n.op === 'Where') t = types.get(n.inputs[1]);
    else t = types.get(n.inputs[0]);
    for (const a of Object.values(n.attrs)) if (a.kind === 'graph') opTypes(a.value, new Map(types), out, byName);
    if (n.op !== 'Loop' && t) for (const o of n.outputs) if (o && !types.has(o)) types.set(o, t);
    if (n.op === 'MaxPool' && n.outputs[1]) types.set(n.outputs[1], 'int64');
  }
  return byName;
}

async function parent(): Promise<void> {
  mkdirSync(values.log!, { recursive: true });
  const cases = CASES.filter((c) => !values.only || c === values.only);
  const census = new Map<string, Set<string>>();
  const missing = new Set<string>();
  const stepSigs = new Set<string>();
  for (const name of cases) {
    const model = await loadCase(name);
    const built = compile(model, { optimizer: defaultOptimizer('sgd', 0.9, false), loss: model.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy', meta: META, target });
    for (const sg of opTypes(decodeGraph(built.trainStep).graph, new Map(), census).values()) stepSigs.add(sg);
    for (const kind of values.single ? (['single'] as const) : GRAPHS.filter((g) => !values.graph || g === values.graph)) {
      const train = graphAndFeeds(model, 'train').bytes;
      const sig = opTypes(decodeGraph(kind === 'single' ? singleStep(train) : kind === 'train' ? train : graphAndFeeds(model, kind).bytes).graph, new Map(), new Map());
      const flags = (['int64', 'cpu-pools', 'nchw', 'single', 'no-opt'] as const).filter((f) => values[f]).map((f) => `--${f}`);
      const args = ['--import', 'tsx', import.meta.filename, '--child', name, '--graph', kind, '--target', target, ...flags];
      const logFile = join(values.log!, `${name.replace(/[:=]/g, '_')}-${kind}.log`);
      // The native log goes straight to a file: written to a (non-blocking) pipe, onnxruntime's lines past the pipe's buffer were lost.
      const fd = openSync(logFile, 'w');
      const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', fd], env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp/xdg' } });
      closeSync(fd);
      const log = readFileSync(logFile, 'utf8');
      const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      const result = line ? JSON.parse(line.slice(7)) : { case: name, graph: kind, error: `child exited ${r.status}: ${log.split('\n').filter(Boolean).slice(-3).join(' | ')}` };
      const placed = placement(log, sig);
      if (kind === 'train') for (const k of Object.keys(placed.noKernel)) missing.add(k);
      console.log(JSON.stringify({ ...result, ...placed, log: logFile }));
    }
  }
  console.log('\nops of the train steps (Loop body included) by input types; with --graph train: "no kernel" where the WebGPU EP found none:');
  for (const sg of [...stepSigs].sort()) if (!sg.startsWith('Constant(')) console.log(`${sg.padEnd(48)} ${missing.size ? (missing.has(sg) ? 'no kernel' : 'webgpu') : ''}`);
}

/**
 * dX of Y = MaxPool(X) (k x k, stride s, pads p, floor mode) without the Indices output: for each
 * window offset (i, j) in row-major order, the strided slice of the (-inf padded) input equals Y
 * where that offset holds the window's maximum; a running "taken" mask keeps only the first, as
 * onnxruntime's CPU MaxPool Indices do; dY masked per offset is stacked to [N*C, k*k, Ho, Wo] and
 * one ungrouped ConvTranspose with one-hot kernels adds each back at s*o - p + offset.
 */
function maxPoolGradGraph(C: number, H: number, k: number, s: number, p: number): { bytes: Uint8Array; Ho: number } {
  const Ho = Math.floor((H + 2 * p - k) / s) + 1;
  const b = new GraphBuilder('maxpool_grad');
  const x = b.input('x', 'float32', ['N', C, H, H]);
  const dy = b.input('dy', 'float32', ['N', C, Ho, Ho]);
  const y = b.op('MaxPool', [x], { kernel_shape: attr.ints([k, k]), strides: attr.ints([s, s]), pads: attr.ints([p, p, p, p]) });
  const xp = p ? b.op('Pad', [x, b.constI([0, 0, p, p, 0, 0, p, p]), b.constF([-3.4e38], [])]) : x;
  let taken = '';
  const parts: string[] = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const xij = b.op('Slice', [xp, b.constI([i, j]), b.constI([i + s * (Ho - 1) + 1, j + s * (Ho - 1) + 1]), b.constI([2, 3]), b.constI([s, s])]);
      const eq = b.cast(b.op('Equal', [xij, y]), 'float32');
      const first = taken ? b.op('Mul', [eq, b.op('Sub', [b.scalar(1), taken])]) : eq;
      taken = taken ? b.op('Add', [taken, first]) : first;
      parts.push(b.op('Unsqueeze', [b.op('Mul', [first, dy]), b.constI([2])]));
    }
  }
  const stacked = b.op('Reshape', [b.op('Concat', parts, { axis: attr.int(2) }), b.constI([-1, k * k, Ho, Ho])]);
  const w = new Float32Array(k ** 4);
  for (let t = 0; t < k * k; t++) w[t * k * k + t] = 1;
  const r = H + 2 * p - k - s * (Ho - 1);
  const dx = b.op('ConvTranspose', [stacked, b.constF(w, [k * k, 1, k, k])], { strides: attr.ints([s, s]), kernel_shape: attr.ints([k, k]), pads: attr.ints([p, p, p, p]), output_padding: attr.ints([r, r]) });
  b.expose(b.op('Reshape', [dx, b.op('Shape', [x])]), 'dx', 'float32', ['N', C, H, H]);
  return { bytes: encodeModel(b.graph), Ho };
}

/** The reference: each dY on its window's first maximum (row-major), where CPU MaxPool's Indices put it. */
function maxPoolGradRef(x: Float32Array, dy: Float32Array, NC: number, H: number, k: number, s: number, p: number, Ho: number): Float32Array {
  const dx = new Float32Array(x.length);
  for (let nc = 0; nc < NC; nc++) {
    for (let o = 0; o < Ho * Ho; o++) {
      let [best, at] = [-Infinity, -1];
      for (let t = 0; t < k * k; t++) {
        const [h, w] = [Math.floor(o / Ho) * s - p + Math.floor(t / k), (o % Ho) * s - p + (t % k)];
        if (h >= 0 && w >= 0 && h < H && w < H && x[(nc * H + h) * H + w] > best) [best, at] = [x[(nc * H + h) * H + w], (nc * H + h) * H + w];
      }
      dx[at] += dy[nc * Ho * Ho + o];
    }
  }
  return dx;
}

/** --kernels: the max-pool gradient above on CPU and on WebGPU alone (CPU fallback disabled); grouped ConvTranspose, WebGPU against CPU. */
async function kernels(): Promise<void> {
  const worst = (a: Float32Array, b: Float32Array) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
  const only = (ep: string) => ({ executionProviders: [ep], logSeverityLevel: 3, ...(ep === 'webgpu' ? { extra: { session: { disable_cpu_ep_fallback: '1' } } } : {}) }) as ort.InferenceSession.SessionOptions;
  for (const [C, H, k, s, p] of [[3, 6, 2, 2, 0], [3, 7, 2, 2, 0], [4, 28, 2, 2, 0], [3, 8, 3, 2, 1], [2, 9, 3, 2, 0]]) {
    const { bytes, Ho } = maxPoolGradGraph(C, H, k, s, p);
    // Integer-valued inputs: most windows hold ties.
    const x = Float32Array.from({ length: 2 * C * H * H }, (_, i) => ((i * 7919) % 13) - 6);
    const dy = Float32Array.from({ length: 2 * C * Ho * Ho }, (_, i) => ((i * 31) % 17) / 17 + 0.1);
    const want = maxPoolGradRef(x, dy, 2 * C, H, k, s, p, Ho);
    const got: string[] = [];
    for (const ep of ['cpu', 'webgpu']) {
      const session = await ort.InferenceSession.create(bytes, only(ep));
      const dx = (await session.run({ x: new ort.Tensor('float32', x, [2, C, H, H]), dy: new ort.Tensor('float32', dy, [2, C, Ho, Ho]) })).dx.data as Float32Array;
      got.push(`${ep} ${worst(want, dx).toExponential(1)}`);
    }
    console.log(`max-pool grad without Indices, k${k} s${s} p${p} on ${C}x${H}x${H}: worst |dX - Indices reference|: ${got.join(', ')}`);
  }
  for (const [G, cin, cout] of [[1, 4, 1], [3, 1, 1], [3, 3, 1], [2, 2, 1], [3, 4, 1], [2, 8, 1], [2, 4, 2], [2, 8, 8]]) {
    const b = new GraphBuilder('grouped_convtranspose');
    const g = b.input('g', 'float32', [1, G * cin, 3, 3]);
    const w = Float32Array.from({ length: G * cin * cout * 4 }, (_, i) => (i % 5) - 2);
    b.expose(b.op('ConvTranspose', [g, b.constF(w, [G * cin, cout, 2, 2])], { group: attr.int(G), strides: attr.ints([2, 2]), kernel_shape: attr.ints([2, 2]) }), 'y', 'float32');
    const feed = { g: new ort.Tensor('float32', Float32Array.from({ length: G * cin * 9 }, (_, i) => ((i * 13) % 7) - 3), [1, G * cin, 3, 3]) };
    const [cpu, gpu] = await Promise.all(['cpu', 'webgpu'].map(async (ep) => (await (await ort.InferenceSession.create(encodeModel(b.graph), only(ep))).run(feed)).y.data as Float32Array));
    console.log(`ConvTranspose group ${G}, ${cin} in / ${cout} out per group: worst |webgpu - cpu| ${worst(cpu, gpu)}`);
  }
}

if (values.kernels) await kernels();
else if (values.child && values.single) await childSingle(values.child);
else if (values.child) await child(values.child, values.graph as GraphKind);
else await parent();
