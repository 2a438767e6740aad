/**
 * Compares cnnlab's training of an imported PyTorch model with PyTorch's own SGD steps:
 * bench/pytorch-import-check.py exports the model and trains it; this trains the export with
 * `cnnlab train --model` on the same batches and prints, per parameter (BatchNorm statistics
 * included), the relative error of cnnlab's update against PyTorch's.
 * Run: npx tsx bench/import-check.ts [--fixed-batch] [--batchnorm]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';

const fixed = process.argv.includes('--fixed-batch');
const which = process.argv.includes('--batchnorm') ? 'batchnorm' : 'residual';
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-import-check-'));
const steps = 10;
const batch = 64;
const lr = 0.05;
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}${r.error ? ` (${r.error.message})` : ''}`);
  return r.stdout;
};
const python = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
if (probe.status !== 0) {
  console.log(`import check skipped: ${python} cannot import torch (apt-get install python3-torch; see ../shared/anchors/README.md)`);
  process.exit(0);
}
run(python, [join(import.meta.dirname, 'pytorch-import-check.py'), dir, '--steps', String(steps), '--batch', String(batch), '--lr', String(lr), ...(fixed ? ['--fixed-batch'] : []), '--model', which]);
const model = join(dir, 'model.onnx');
const cli = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const out = join(dir, 'run');
run(process.execPath, [cli, 'eval', model, '--dataset', 'mnist']);
const flags = ['--dataset', 'mnist', '--opt', 'sgd', '--momentum', '0', '--no-shuffle', '--lr', String(lr), '--batch', String(batch)];
run(process.execPath, [cli, 'train', '--model', model, ...flags, '--limit-train', String(steps * batch), '--epochs', '1', '--out', out]);

const torch = JSON.parse(readFileSync(join(dir, 'torch-after.json'), 'utf8')) as { torch: string; losses: number[]; before: Record<string, number[]>; after: Record<string, number[]> };
const trained = decodeGraph(readFileSync(join(out, 'last.onnx')));
const original = decodeGraph(readFileSync(model));
const names = (g: typeof trained) => g.graph.inputs.map((i) => i.name).join(',') + ' -> ' + g.graph.outputs.map((o) => o.name).join(',');
console.log(`PyTorch ${torch.torch}, the ${which} model, ${steps} SGD steps of ${batch} images, lr ${lr}${fixed ? ', exported with a fixed batch of 1' : ''}`);
for (const t of original.graph.initializers) {
  const before = torch.before[t.name];
  if (before && before.some((v, i) => Math.abs(v - (t.data as Float32Array)[i]) > 1e-7)) console.log(`note: ${t.name} in the exported file differs from PyTorch's starting value`);
}
console.log(`interface: exported ${names(original)}; trained ${names(trained)}${names(original) === names(trained) ? ' (unchanged)' : ' (CHANGED)'}`);
let worst = 0;
for (const t of trained.graph.initializers) {
  const after = torch.after[t.name];
  const before = torch.before[t.name];
  if (!after || !before) continue;
  const mine = t.data as Float32Array;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < mine.length; i++) {
    diff += (mine[i] - after[i]) ** 2;
    norm += (after[i] - before[i]) ** 2;
  }
  const rel = Math.sqrt(diff / norm);
  worst = Math.max(worst, rel);
  console.log(`${t.name.padEnd(18)} ${String(mine.length).padStart(6)} values  |update| ${Math.sqrt(norm).toExponential(3)}  relative error of the update ${rel.toExponential(2)}`);
}
console.log(`worst relative error of an update: ${worst.toExponential(2)} (target: well under 1e-2)`);
