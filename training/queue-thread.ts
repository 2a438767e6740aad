/**
 * A queued trial's thread (training/queue-worker.ts starts one per trial through bin/thread.mjs):
 * the trial runs here so that the worker's main thread, which renews the job's lock, is never
 * held by a session run (onnxruntime-node runs a session on the calling thread; a run longer than
 * the stall timeout would let another worker take a trial that is still running).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CnnlabError } from '../common/errors.ts';
import type { ThreadInput, ThreadMessage } from './queue.ts';
import { prepareTrials, runTrial, type SweepOptions } from './sweep.ts';

async function main(port: NonNullable<typeof parentPort>, input: ThreadInput): Promise<void> {
  const { trial, spec, index, total } = input.job;
  const post = (m: ThreadMessage) => port.postMessage(m);
  const stop = { requested: false };
  port.on('message', (m) => void (m === 'stop' && (stop.requested = true)));
  let epochs = 0;
  const sweep: SweepOptions = {
    arch: spec.arch,
    model: spec.model,
    archFile: spec.archFile,
    base: { ...spec.base, ...input.machine },
    trials: [trial],
    dir: spec.dir,
    force: spec.force,
    fit: { stop, onEpoch: (m) => post({ progress: { epoch: m.epoch, epochs } }) },
  };
  try {
    const [p] = await prepareTrials(sweep);
    epochs = p.cfg?.epochs ?? 0;
    const record = await runTrial(p, sweep, `[${index}/${total}] ${trial.id}`, console.log, { worker: input.name });
    post(record ? { record } : { interrupted: true });
  } catch (err) {
    if (!(err instanceof CnnlabError)) throw err;
    post({ error: err.message });
  }
  port.close();
}

if (parentPort && (workerData as ThreadInput | undefined)?.job) await main(parentPort, workerData as ThreadInput);
