import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';

/**
 * Which WebGPU adapter onnxruntime-node's Dawn opens, and whether it is a GPU. onnxruntime does
 * not name the adapter (not in its JS API, nor in its log at level 0, nor in its profile); on
 * Linux, Dawn opens it through the Vulkan loader, whose driver log names the device it creates:
 * `Using "llvmpipe (LLVM 15.0.6, 256 bits)" with driver: "libvulkan_lvp.so"` (Mesa's lavapipe,
 * Vulkan loader 1.3.239). `--ep auto` reads that line from a child process that opens a one-node
 * session with VK_LOADER_DEBUG=driver; nothing beyond onnxruntime-node and the Vulkan driver is needed.
 */

export { adapterKind, type AdapterKind } from '../common/adapters.ts';

export interface WebGpuAdapter {
  /** The device's name as its driver gives it; undefined where it could not be read. */
  name?: string;
  /** Dawn's backend, where known ('Vulkan'). */
  backend?: string;
  /** The Vulkan driver library ("libvulkan_lvp.so"). */
  driver?: string;
}

/** The device Dawn created, from the Vulkan loader's VK_LOADER_DEBUG=driver output (the last one named). */
export function adapterFromLoaderLog(log: string): WebGpuAdapter {
  const used = [...log.matchAll(/Using "([^"]+)" with driver: "([^"]+)"/g)].pop();
  return used ? { name: used[1].trim(), backend: 'Vulkan', driver: used[2] } : {};
}

/** The child: opens a one-Relu model on the WebGPU EP alone and runs it; the reason on its last stderr line if not. */
const CHILD = `
const ort = require(process.env.CNNLAB_ORT);
const model = Buffer.from(process.env.CNNLAB_PROBE_MODEL, 'base64');
ort.InferenceSession.create(model, { executionProviders: ['webgpu'], logSeverityLevel: 3 })
  .then((s) => s.run({ x: new ort.Tensor('float32', new Float32Array(4), [4]) }))
  .then(() => process.exit(0), (e) => { process.stderr.write('\\nCNNLAB_PROBE_FAILED ' + String(e && e.message).split('\\n')[0] + '\\n'); process.exit(3); });
`;

/**
 * Opens `probe` (a one-node model taking x: float32 [4]) on the WebGPU EP in a child process with
 * the Vulkan loader's driver log on: the adapter it ran on, or why it did not run (one clause).
 * A child because the loader reads VK_LOADER_DEBUG once per process, and Dawn's failures may abort.
 */
export function probeAdapter(probe: Uint8Array, timeoutMs = 60_000): Promise<{ adapter: WebGpuAdapter; failure?: string }> {
  const env = { ...process.env, VK_LOADER_DEBUG: 'driver', CNNLAB_ORT: createRequire(import.meta.url).resolve('onnxruntime-node'), CNNLAB_PROBE_MODEL: Buffer.from(probe).toString('base64') };
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', CHILD], { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      const adapter = adapterFromLoaderLog(stderr);
      if (!err) return resolve({ adapter });
      const said = /CNNLAB_PROBE_FAILED (.*)/.exec(stderr)?.[1];
      const why = said ?? (err.killed ? `no answer in ${timeoutMs / 1000} s` : `the probe process ended with ${err.signal ?? `exit code ${err.code}`}`);
      resolve({ adapter, failure: why.replace(/^.*Failed to get a WebGPU adapter: /, 'no WebGPU adapter: ').slice(0, 240) });
    });
  });
}
