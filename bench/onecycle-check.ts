/**
 * cnnlab's OneCycle schedule against PyTorch's OneCycleLR, step by step, for eva-best's run
 * (max_lr 0.017, 15 epochs of 469 steps): the learning rate and momentum every step gets.
 * PyTorch is the measuring stick (Debian's python3-torch at /usr/bin/python3), not a dependency.
 *
 *   npx tsx bench/onecycle-check.ts [--epochs 15 --steps 469 --lr 0.017]
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PRESETS } from '../graph-builder/dsl/presets.ts';
import { hyperAt, type ScheduleSettings } from '../training/schedule.ts';

const { values } = parseArgs({ options: { epochs: { type: 'string', default: '15' }, steps: { type: 'string', default: '469' }, lr: { type: 'string', default: '0.017' } } });
const epochs = Number(values.epochs);
const steps = Number(values.steps);
const lr = Number(values.lr);
const torch = spawnSync('/usr/bin/python3', [join(import.meta.dirname, 'onecycle-check.py'), String(lr), String(epochs), String(steps)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
if (torch.status !== 0) {
  console.log(`PyTorch not available (${(torch.stderr || torch.error?.message || '').trim().split('\n').pop()}); install python3-torch to compare`);
  process.exit(0);
}
const reference = JSON.parse(torch.stdout) as [number, number][];
const s: ScheduleSettings = { name: 'onecycle', lr, momentum: 0.9, totalSteps: epochs * steps, stepsPerEpoch: steps, stepEpochs: 1, gamma: 1, onecycle: PRESETS['eva-best'].recipe.onecycle! };
let worstLr = 0;
let worstMomentum = 0;
let at = 0;
reference.forEach(([tlr, tm], step) => {
  const h = hyperAt(s, step);
  const e = Math.abs(h.lr - tlr) / tlr;
  if (e > worstLr) [worstLr, at] = [e, step];
  worstMomentum = Math.max(worstMomentum, Math.abs(h.momentum - tm));
});
console.log(`OneCycle, ${epochs} epochs x ${steps} steps, max_lr ${lr}: ${reference.length} steps compared with PyTorch's OneCycleLR`);
console.log(`  worst relative lr difference ${worstLr.toExponential(2)} (step ${at}), worst momentum difference ${worstMomentum.toExponential(2)}`);
for (const step of [0, 1, steps - 1, steps, Math.round(0.3 * epochs * steps) - 1, epochs * steps - 1]) {
  const h = hyperAt(s, step);
  console.log(`  step ${String(step).padStart(5)}: lr ${h.lr.toExponential(6)} (PyTorch ${reference[step][0].toExponential(6)}), momentum ${h.momentum.toFixed(6)} (PyTorch ${reference[step][1].toFixed(6)})`);
}
