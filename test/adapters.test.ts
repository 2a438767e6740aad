/**
 * `--ep auto` and WebGPU adapters: which adapters are software ones (never picked), how the
 * adapter Dawn opened is read from the Vulkan loader's log, and what auto says on this machine.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRuntime, probeWebGpu } from '../runtime/ort.ts';
import { adapterFromLoaderLog, adapterKind } from '../runtime/webgpu-adapter.ts';

/** Mesa 25's lavapipe through Vulkan loader 1.3.239 (VK_LOADER_DEBUG=driver, Debian 12 with bookworm-backports), trimmed. */
const LAVAPIPE_LOG = `DRIVER:           Found ICD manifest file /usr/share/vulkan/icd.d/lvp_icd.json, version "1.0.0"
DEBUG | DRIVER:   Searching for ICD drivers named libvulkan_lvp.so
INFO | DRIVER:    linux_read_sorted_physical_devices:
INFO | DRIVER:               [0] llvmpipe (LLVM 15.0.6, 256 bits)
DEBUG | DRIVER:   Copying old device 0 into new device 0
DRIVER:           vkCreateDevice layer callstack setup to:
DRIVER:              <Device>
DRIVER:                  Using "llvmpipe (LLVM 15.0.6, 256 bits)" with driver: "libvulkan_lvp.so"
`;

describe('WebGPU adapters', () => {
  it('calls lavapipe/llvmpipe, SwiftShader and Windows WARP software adapters, and NVIDIA, AMD, Intel and Apple GPUs hardware ones', () => {
    const software = [
      'llvmpipe (LLVM 15.0.6, 256 bits)', // lavapipe on this machine (Mesa 25.0.7)
      'llvmpipe (LLVM 19.1.7, 256 bits)',
      'SwiftShader Device (Subzero)', // SwiftShader's Vulkan device
      'SwiftShader Device (LLVM 10.0.0)',
      'google swiftshader', // Chromium's adapter info (vendor, architecture) without a GPU
      'Microsoft Basic Render Driver', // D3D12 WARP
    ];
    const hardware = [
      'NVIDIA GeForce RTX 3060',
      'NVIDIA H200',
      'AMD Radeon RX 6800 XT (RADV NAVI21)',
      'AMD Radeon Graphics (RADV RENOIR)',
      'Intel(R) UHD Graphics 620 (KBL GT2)',
      'Intel(R) Arc(tm) A770 Graphics (DG2)',
      'Apple M2',
      'nvidia ampere', // Chromium's adapter info on a GPU
    ];
    for (const name of software) assert.equal(adapterKind(name), 'software', name);
    for (const name of hardware) assert.equal(adapterKind(name), 'hardware', name);
  });

  it('reads the device Dawn opened from the Vulkan loader driver log (the last one named), and nothing from a log without one', () => {
    assert.deepEqual(adapterFromLoaderLog(LAVAPIPE_LOG), { name: 'llvmpipe (LLVM 15.0.6, 256 bits)', backend: 'Vulkan', driver: 'libvulkan_lvp.so' });
    const two = `${LAVAPIPE_LOG}                 Using "NVIDIA GeForce RTX 3060" with driver: "libGLX_nvidia.so.0"\n`;
    assert.equal(adapterFromLoaderLog(two).name, 'NVIDIA GeForce RTX 3060');
    assert.deepEqual(adapterFromLoaderLog('Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced\n'), {});
  });

  it('--ep auto takes WebGPU only on a hardware adapter and names the adapter either way (lavapipe here: the CPU, saying why)', async (t) => {
    const rt = await createRuntime({ ep: 'auto', threads: 1 });
    if (rt.ep === 'cuda') return t.skip('CUDA loaded here, and auto takes it before WebGPU');
    if (process.platform !== 'linux') return t.skip(`the adapter is named through the Vulkan loader, on Linux; auto said: ${rt.note}`);
    const missing = await probeWebGpu();
    if (missing) {
      assert.equal(rt.ep, 'cpu');
      return t.skip(`no WebGPU adapter here (${missing}); auto said: ${rt.note}`);
    }
    const named = /^--ep auto: using webgpu on (.+) \(Vulkan\)$/.exec(rt.note) ?? /^--ep auto: using cpu \(CUDA did not load; WebGPU adapter (.+) is a software one; --ep webgpu uses it\)$/.exec(rt.note);
    assert.ok(named, rt.note);
    assert.equal(rt.ep, adapterKind(named[1]) === 'hardware' ? 'webgpu' : 'cpu', rt.note);
  });
});
