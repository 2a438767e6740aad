import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative } from 'node:path';
import * as ortNode from 'onnxruntime-node';
import { CnnlabError } from '../common/errors.ts';
import { GraphBuilder } from '../graph-builder/graph/ir.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { NCHWC_DOMAIN } from '../graph-builder/artifacts/nchwc.ts';
import { lowerForWebGpu } from '../graph-builder/artifacts/webgpu.ts';
import { adapterKind, probeAdapter, type WebGpuAdapter } from './webgpu-adapter.ts';

/** onnxruntime-node and onnxruntime-web share one API (onnxruntime-common); this is its shape. */
export type Ort = typeof ortNode;
export type Session = ortNode.InferenceSession;
export type Tensor = ortNode.Tensor;

export const EP_NAMES = ['cpu', 'cuda', 'wasm', 'webgpu', 'auto'] as const;
export type EpName = (typeof EP_NAMES)[number];

export interface RuntimeOptions {
  ep: EpName;
  /** Intra-op threads (CPU EP) or wasm threads; default: all cores (wasm: at most 4). */
  threads?: number;
  deviceId?: number;
}

export interface Runtime {
  /** The provider actually in use ('auto' resolved). */
  ep: Exclude<EpName, 'auto'>;
  ort: Ort;
  createSession(model: Uint8Array): Promise<Session>;
  /**
   * WebGPU only: a session whose named outputs stay in GPU memory ('gpu-buffer' tensors, to be
   * fed to a later run; onnxruntime-node 1.30 cannot read them: GpuStepRunner in step-runner.ts).
   */
  createGpuSession?(model: Uint8Array, gpuOutputs: readonly string[]): Promise<Session>;
  /** What `auto` chose and why, or a note on the provider. */
  note: string;
  /** CPU EP only: the block size of its NCHWc convolution kernels (8 or 16 on x86-64), where it has them. */
  nchwcBlock?: number;
}

export const CUDA_INSTALL_HINT =
  'the CUDA execution provider is not installed: run `npm run install-cuda` once (needs an NVIDIA GPU with CUDA 12 and cuDNN 9), or use --ep cpu';

/**
 * A run keeps two sessions (train step and eval), each with its own intra-op thread pool.
 * onnxruntime's pool threads spin after each run by default; the idle eval session's threads then
 * compete with training for the same cores: eva-best's second epoch took 67.7 s with spinning
 * and 38.1 s without (same losses).
 */
const NO_SPINNING = { extra: { session: { intra_op: { allow_spinning: '0' } } } };

function cudaSessionOptions(deviceId: number): ortNode.InferenceSession.SessionOptions {
  return {
    executionProviders: [
      // EXHAUSTIVE cuDNN algorithm search: DEFAULT was measured about 4x slower upstream for training-sized convs.
      { name: 'cuda', deviceId, cudnn_conv_algo_search: 'EXHAUSTIVE' } as unknown as ortNode.InferenceSession.ExecutionProviderConfig,
    ],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 4,
    ...NO_SPINNING,
  } as ortNode.InferenceSession.SessionOptions;
}

/** The wasm thread count the process's onnxruntime-web was initialised with (fixed from then on). */
let wasmThreadsInUse: number | undefined;

/**
 * onnxruntime-web (1.30) runs WebAssembly threads in Node too (Emscripten pthreads on
 * worker_threads with a SharedArrayBuffer memory); the count is read once, when its first session
 * is created. partB, batch 600, one epoch of 3,200 images: 278 img/s with 1 thread, 494 with 2
 * (2026-11-23, same losses). Default: the machine's cores, at most 4 (the browser build's cap).
 */
function wasmThreads(ortWeb: Ort, wanted: number | undefined): { threads: number; ignored: string } {
  const threads = wasmThreadsInUse ?? wanted ?? Math.min(4, availableParallelism());
  wasmThreadsInUse = threads;
  ortWeb.env.wasm.numThreads = threads;
  const ignored = wanted !== undefined && wanted !== threads ? ` (--threads ${wanted} ignored: this process's wasm runtime already started with ${threads})` : '';
  return { threads, ignored };
}

/** Where onnxruntime-node keeps its native libraries; `npm run install-cuda` puts the CUDA EP there. */
function bindingDir(): string {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(root, 'bin', 'napi-v6', process.platform, process.arch);
}

/** A folder as the user would type it: relative to the working folder when inside it. */
function shown(dir: string): string {
  const rel = relative(process.cwd(), dir);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : dir;
}

/**
 * Why the CUDA EP did not load, in one short clause: onnxruntime's message names each library by
 * its full path (some 330 characters for the two of them); here the folder is named once.
 */
export function cudaFailure(message: string, dir = bindingDir()): string {
  const first = message.split('\n')[0];
  const short = first.split(`${dir}/`).join('');
  return (short === first ? short : `${short} (in ${shown(dir)})`).slice(0, 240);
}

/** Checks that the CUDA EP's libraries exist, then opens a tiny model on it. */
async function probeCuda(deviceId: number): Promise<string | undefined> {
  const missing = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'].filter((f) => !existsSync(join(bindingDir(), f)));
  // The CUDA library is the one to name: install-cuda puts both in place, and the shared one alone loads nothing.
  if (missing.length) return `${missing.includes('libonnxruntime_providers_cuda.so') ? 'libonnxruntime_providers_cuda.so' : missing[0]} not in ${shown(bindingDir())}`;
  const b = new GraphBuilder('cuda_probe');
  const x = b.input('x', 'float32', [1]);
  b.expose(x, 'y', 'float32', [1]);
  const probe = encodeModel(b.graph);
  try {
    const s = await ortNode.InferenceSession.create(probe, cudaSessionOptions(deviceId));
    await s.release();
    return undefined;
  } catch (err) {
    return cudaFailure((err as Error).message);
  }
}

/**
 * onnxruntime-node's WebGPU EP (Dawn: Vulkan, D3D12 or Metal), with the CPU EP for the shape and
 * int64 bookkeeping it has no kernels for. NCHW: the graphs are NCHW, and the EP's default NHWC
 * layout added 320 Transpose programs to eva-best's step where NCHW adds 158 (docs/webgpu.md).
 */
const WEBGPU_SESSION = {
  executionProviders: [{ name: 'webgpu', preferredLayout: 'NCHW' }, 'cpu'],
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
} as unknown as ortNode.InferenceSession.SessionOptions;

/** A one-Relu model, x: float32 [4] in, y out. */
function reluProbe(): Uint8Array {
  const b = new GraphBuilder('webgpu_probe');
  b.expose(b.op('Relu', [b.input('x', 'float32', [4])]), 'y', 'float32', [4]);
  return encodeModel(b.graph);
}

/**
 * Whether the WebGPU EP starts here: undefined when it runs a one-node model, else why not in one
 * clause; the same probe `--ep webgpu` and `--ep auto` open (probeAdapter), so the tests skip
 * exactly where those would refuse.
 */
export async function probeWebGpu(): Promise<string | undefined> {
  return (await probeAdapter(reluProbe())).failure;
}

/**
 * Whether `--ep auto` takes the WebGPU EP: only on a hardware adapter (a software one such as
 * lavapipe trained partA some 30 times slower than the CPU EP here: docs/webgpu.md), and `why`
 * names it: "on NVIDIA GeForce RTX 3060 (Vulkan)", or why not. The adapter is named on Linux
 * (the Vulkan loader's log, runtime/webgpu-adapter.ts); Dawn's Metal backend (macOS) lists GPUs
 * only; elsewhere (D3D12, where WARP is a software adapter) an unnamed adapter is not taken.
 * `found`: a probeAdapter already under way (default: one started here).
 */
export async function autoWebGpu(found?: Promise<{ adapter: WebGpuAdapter; failure?: string }>): Promise<{ use: boolean; why: string }> {
  const { adapter, failure } = await (found ?? probeAdapter(reluProbe()));
  if (failure) return { use: false, why: failure };
  if (adapter.name) {
    const software = adapterKind(adapter.name) === 'software';
    return { use: !software, why: software ? `WebGPU adapter ${adapter.name} is a software one; --ep webgpu uses it` : `on ${adapter.name} (${adapter.backend})` };
  }
  if (process.platform === 'darwin') return { use: true, why: 'on a Metal adapter (onnxruntime does not name it)' };
  return { use: false, why: 'the WebGPU adapter could not be named (cnnlab reads its name from the Vulkan loader, on Linux), so it may be a software one; --ep webgpu uses it' };
}

let nchwcProbed: Promise<number | undefined> | undefined;

/**
 * The CPU EP's NCHWc block size: MLAS picks it per machine (8 with AVX2, 16 with AVX-512, none
 * where it has no blocked kernels), and onnxruntime names it nowhere but in the filters its
 * optimiser reorders: one Conv with 1 output channel and a constant filter is optimised and
 * saved, and the reordered filter's output channels are the block. Once per process (some 10 ms);
 * undefined (standard Convs) where it cannot tell.
 */
export function nchwcBlockSize(): Promise<number | undefined> {
  nchwcProbed ??= (async () => {
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(tmpdir(), 'cnnlab-nchwc-'));
      const b = new GraphBuilder('nchwc_probe');
      const x = b.input('x', 'float32', [1, 1, 4, 4]);
      b.expose(b.op('Conv', [x, b.constF([1], [1, 1, 1, 1])]), 'y', 'float32');
      const file = join(dir, 'optimised.onnx');
      const s = await ortNode.InferenceSession.create(encodeModel(b.graph), { executionProviders: ['cpu'], graphOptimizationLevel: 'all', optimizedModelFilePath: file, logSeverityLevel: 3 });
      await s.release();
      const { graph } = decodeGraph(readFileSync(file));
      const conv = graph.nodes.find((n) => n.op === 'Conv' && n.domain === NCHWC_DOMAIN);
      const filter = conv && graph.initializers.find((t) => t.name === conv.inputs[1]);
      return filter && filter.dims[0] > 1 ? filter.dims[0] : undefined;
    } catch {
      // No writable temp folder, or a build that cannot save its optimised model: standard Convs.
      return undefined;
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  })();
  return nchwcProbed;
}

export async function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const deviceId = opts.deviceId ?? 0;
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1)) {
    throw new CnnlabError(`--threads: expected a whole number >= 1, got ${opts.threads}`, 2);
  }
  let ep = opts.ep;
  let note = '';
  let adapter: WebGpuAdapter | undefined;
  if (ep === 'cuda' || ep === 'auto') {
    const failure = await probeCuda(deviceId);
    if (failure && ep === 'cuda') throw new CnnlabError(`--ep cuda: ${CUDA_INSTALL_HINT} (${failure})`);
    ep = failure ? 'cpu' : 'cuda';
    if (opts.ep === 'auto' && !failure) note = '--ep auto: using cuda';
    // CUDA first where both load: its EP runs the whole train step on the GPU (the Loop, the int64
    // bookkeeping, cuDNN's convolutions), where the WebGPU EP leaves the Loop and the shape ops to
    // the CPU EP; on an NVIDIA machine both reach the same GPU.
    if (opts.ep === 'auto' && failure) {
      const found = probeAdapter(reluProbe());
      const gpu = await autoWebGpu(found);
      ep = gpu.use ? 'webgpu' : 'cpu';
      adapter = gpu.use ? (await found).adapter : undefined;
      note = `--ep auto: using ${ep} ${gpu.use ? gpu.why : `(CUDA did not load; ${gpu.why})`}`;
    }
  }
  if (ep === 'wasm') {
    const ortWeb = (await import('onnxruntime-web')) as unknown as Ort;
    const { threads, ignored } = wasmThreads(ortWeb, opts.threads);
    return {
      ep,
      ort: ortWeb,
      note: note || `onnxruntime-web wasm, ${threads} thread${threads > 1 ? 's' : ''}${ignored}`,
      createSession: (model) => ortWeb.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }),
    };
  }
  if (ep === 'webgpu') {
    if (!adapter) {
      const probed = await probeAdapter(reluProbe());
      if (probed.failure) throw new CnnlabError(`--ep webgpu: onnxruntime's WebGPU execution provider did not start (${probed.failure}); use --ep cpu`);
      adapter = probed.adapter;
    }
    const named = adapter.name ? ` on ${adapter.name} through ${adapter.backend}${adapterKind(adapter.name) === 'software' ? ' (a software adapter: slower than the CPU EP)' : ''}` : ' (onnxruntime-node, Dawn)';
    return {
      ep,
      ort: ortNode,
      note: note || `WebGPU${named}, shape bookkeeping on the CPU`,
      createSession: (model) => ortNode.InferenceSession.create(lowerForWebGpu(model), WEBGPU_SESSION),
      createGpuSession: (model, gpuOutputs) =>
        ortNode.InferenceSession.create(lowerForWebGpu(model), { ...WEBGPU_SESSION, preferredOutputLocation: Object.fromEntries(gpuOutputs.map((o) => [o, 'gpu-buffer'])) } as ortNode.InferenceSession.SessionOptions),
    };
  }
  if (ep === 'cuda') {
    return { ep, ort: ortNode, note: note || `CUDA device ${deviceId}`, createSession: (model) => ortNode.InferenceSession.create(model, cudaSessionOptions(deviceId)) };
  }
  const threads = opts.threads;
  const nchwcBlock = await nchwcBlockSize();
  return {
    ep: 'cpu',
    ort: ortNode,
    nchwcBlock,
    note: note || `CPU, ${threads ?? 'default'} intra-op threads`,
    createSession: (model) =>
      ortNode.InferenceSession.create(model, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        ...(threads ? { intraOpNumThreads: threads } : {}),
        ...NO_SPINNING,
      } as ortNode.InferenceSession.SessionOptions),
  };
}
