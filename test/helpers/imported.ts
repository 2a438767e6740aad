/**
 * What the tests of imported models (test/families.test.ts, test/exporters.test.ts) share: the
 * fixtures' example input, the metadata they compile with, the file's own parameter values, and
 * two SGD steps through the real train step.
 */
import { compile } from '../../graph-builder/artifacts/compile.ts';
import type { ParamSet } from '../../graph-builder/dsl/init.ts';
import type { Model } from '../../graph-builder/model.ts';
import { defaultOptimizer } from '../../graph-builder/optimizers.ts';
import { createRuntime } from '../../runtime/ort.ts';
import { StepRunner } from '../../runtime/step-runner.ts';

/** The fixed input the fixtures' export scripts fed their framework: a 32-bit LCG from seed 1, row-major, values in [-1, 1). */
export function exampleInput(n: number): Float32Array {
  let s = 1;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 8) / 8388608 - 1;
  });
}

/** Metadata for compiling a fixture: no normalisation inside the graph. */
export const META = { architecture: 'fixture', dataset: 'folder', classes: [], mean: 0, std: 1 };

/** The parameter values the file holds. */
export const initial = (m: Model) => new Map(m.params.map((p) => [p.name, (p.init as { data: Float32Array }).data]));

/** Two SGD steps of four made-up images each on the CPU EP (momentum 0.9 where given), compiled as `cnnlab train` compiles: the losses and the tensors after. */
export async function twoSteps(model: Model, start: ParamSet, o: { lr: number; momentum: number; frozen?: ReadonlySet<string> }) {
  const rt = await createRuntime({ ep: 'cpu', threads: 1 });
  // As `cnnlab train` compiles for the CPU EP: its Convs on the NCHWc kernels where the machine has them.
  const built = compile(model, { optimizer: defaultOptimizer('sgd', o.momentum, false), loss: model.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy', meta: META, frozen: o.frozen, target: 'cpu', nchwcBlock: rt.nchwcBlock });
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(start));
  const [K, B] = [2, 4];
  const pixels = K * B * model.inputShape.reduce((a, d) => a * d, 1);
  const out = await runner.run({
    K,
    B,
    inputs: {
      images: Uint8Array.from({ length: pixels }, (_, i) => (i * 7919) % 251),
      labels: Uint8Array.from({ length: K * B }, (_, i) => i % model.classes),
      lr: new Float32Array(K).fill(o.lr),
      momentum: new Float32Array(K).fill(o.momentum),
      dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)),
    },
  });
  const after = runner.tensors();
  await runner.release();
  return { built, losses: out.losses, after };
}
