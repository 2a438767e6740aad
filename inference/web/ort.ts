/**
 * onnxruntime-web as the page uses it, loaded from this server's /ort/ (server.ts's ORT_FILES):
 * its WebGPU build where the browser gives a WebGPU adapter, its wasm build otherwise. The
 * choice is made once, by loadOrt() as the page starts (before it opens any session).
 */
import type * as OrtWeb from 'onnxruntime-web';
// The wasm build (page-bundle.ts maps it to /ort/ort.wasm.min.mjs, 50 KB of script; its wasm is fetched only by a session on it).
import * as ort from 'onnxruntime-web/wasm';
import type { Ort } from '../../runtime/ort.ts';
import { adapterKind } from '../../common/adapters.ts';

/** The backend the page runs on: 'webgpu' (sessions on ['webgpu', 'wasm']) or 'wasm'; `adapter` names the GPU adapter ("google swiftshader"). */
export interface Backend {
  kind: 'webgpu' | 'wasm';
  adapter?: string;
  /** Why the page is on wasm where the browser has navigator.gpu (no adapter, or it failed). */
  reason?: string;
}

/** The few WebGPU calls made here (TypeScript's DOM library does not declare navigator.gpu). */
interface GpuAdapterInfo {
  isFallbackAdapter?: boolean;
  vendor?: string;
  architecture?: string;
  description?: string;
}
interface Gpu {
  requestAdapter(): Promise<{ isFallbackAdapter?: boolean; info?: GpuAdapterInfo; requestAdapterInfo?: () => Promise<GpuAdapterInfo> } | null>;
}

/** The WebGPU adapter's name where the browser gives one; a reason string where it does not. */
async function webgpuAdapter(): Promise<{ name: string } | { reason: string }> {
  // `?backend=wasm` in the page's address keeps it on wasm; `?backend=webgpu` takes a software adapter too.
  const asked = new URLSearchParams(location.search).get('backend');
  if (asked === 'wasm') return { reason: 'the address asks for ?backend=wasm' };
  const gpu = (navigator as unknown as { gpu?: Gpu }).gpu;
  if (!gpu) return { reason: 'this browser has no navigator.gpu' };
  try {
    // A browser with WebGPU turned off can leave the request unanswered: 3 s is ample for one that answers.
    const adapter = await Promise.race([gpu.requestAdapter(), new Promise<null>((r) => setTimeout(() => r(null), 3000))]);
    if (!adapter) return { reason: 'navigator.gpu gives no adapter' };
    const info = adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {};
    const name = [info.vendor, info.architecture || info.description].filter(Boolean).join(' ') || 'unnamed adapter';
    // A software adapter (Chromium's SwiftShader) trained the head about 100x slower than wasm here: used only when asked for.
    const software = adapter.isFallbackAdapter || info.isFallbackAdapter || adapterKind(name) === 'software';
    if (software && asked !== 'webgpu') return { reason: `${name} is a software adapter, slower than WebAssembly (?backend=webgpu uses it)` };
    return { name };
  } catch (err) {
    return { reason: `navigator.gpu: ${(err as Error).message}` };
  }
}

/** The backend loadOrt() chose (wasm until it has). */
export let backend: Backend = { kind: 'wasm', reason: 'not chosen yet' };
/** onnxruntime-web's module: the wasm build, or the WebGPU build once loadOrt() has chosen it. */
let chosen = ort as unknown as typeof OrtWeb;
export { chosen as ort };

/** Chooses the backend and loads its onnxruntime-web build; the page's other modules use `ort` after it resolves. */
export async function loadOrt(): Promise<void> {
  const found = await webgpuAdapter();
  backend = 'name' in found ? { kind: 'webgpu', adapter: found.name } : { kind: 'wasm', reason: found.reason };
  // A computed specifier: the bundler leaves it to the browser (page-bundle.ts bundles no onnxruntime-web).
  const url = '/ort/ort.webgpu.min.mjs';
  if (backend.kind === 'webgpu') chosen = (await import(url)) as typeof OrtWeb;
  chosen.env.wasm.wasmPaths = '/ort/';
  // WebAssembly threads need a cross-origin isolated page (the server sends COOP/COEP).
  chosen.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

/** The types of onnxruntime-web's values, under the names the page's modules use (`ort.Tensor`, `ort.InferenceSession`). */
declare namespace chosen {
  type Tensor = OrtWeb.Tensor;
  type InferenceSession = OrtWeb.InferenceSession;
}

/** Where a session runs: on WebGPU with wasm for what it lacks (the int64 bookkeeping), or on wasm; `on` forces one (the tests compare them). */
export function sessionOptions(on: Backend['kind'] = backend.kind): OrtWeb.InferenceSession.SessionOptions {
  return { executionProviders: on === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'] };
}

/** The graphs the server builds for a backend: `?target=webgpu` (the 'webgpu' target, lowered) on WebGPU, the CPU kernels' otherwise. */
export function targetQuery(on: Backend['kind'] = backend.kind): string {
  return on === 'webgpu' ? '?target=webgpu' : '';
}

/** What the page says it trains on: "WebGPU (google swiftshader)" or "WebAssembly". */
export function backendName(): string {
  return backend.kind === 'webgpu' ? `WebGPU (${backend.adapter})` : 'WebAssembly';
}

/**
 * The module feedsFor (runtime/step-runner.ts) takes: it reads only `Tensor`, which is
 * onnxruntime-common's in onnxruntime-web as in onnxruntime-node (the Node module's type also
 * lists Node-only functions, hence the cast).
 */
export function feedsOrt(): Ort {
  return chosen as unknown as Ort;
}
