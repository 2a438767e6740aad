/**
 * `cnnlab worker --queue redis://HOST:PORT/NAME`: takes trials from a queue one at a time and runs
 * each as a normal run folder (training/sweep.ts runTrial), returning its record to the queue.
 *
 * Each trial runs in a thread of its own (queue-thread.ts), so this thread is free to renew the
 * job's lock however long a session run takes. A worker that dies (kill -9, a machine lost) stops
 * renewing it; after the stall timeout another worker's stalled-job check puts the job back and
 * someone resumes the run from its last checkpoint. A worker that cannot renew a lock (Redis out
 * of reach) abandons the trial at once. A trial whose folder already holds its finished record (a worker died
 * between writing status.json and reporting) is reported, not run again. Ctrl-C stops the trial at
 * the end of its chunk with a checkpoint and hands the job straight back to the queue.
 */
import { hostname } from 'node:os';
import { Worker as Thread } from 'node:worker_threads';
import { type Job, WaitingError, Worker } from 'bullmq';
import { CnnlabError } from '../common/errors.ts';
import { connectionOf, isFinished, openQueue, type QueueAddress, type ThreadInput, type ThreadMessage, type TrialJob, type TrialProgress } from './queue.ts';
import type { TrialRecord } from './sweep.ts';
import type { TrainFlags } from './flags.ts';

export interface WorkerOptions {
  address: QueueAddress;
  /** Seconds without a lock renewal after which a trial counts as lost and is taken again. */
  stallSeconds: number;
  /** Exit once the coordinator has marked the queue finished and no trial is left (for job arrays). */
  untilDone?: boolean;
  /** Flags of this machine that override the queue's (ep, threads): they do not change what a trial computes. */
  machine?: Pick<TrainFlags, 'ep' | 'threads'>;
  /** Set by Ctrl-C / SIGTERM. */
  stop: { requested: boolean };
  log?: (line: string) => void;
}

/** How many times a trial may lose its worker before it is failed: each loss resumes from a checkpoint. */
const MAX_LOST_WORKERS = 5;

/** The module a trial thread runs, beside this one (.ts in a checkout, .js in the package), and the thread's entry in bin/. */
const HERE = import.meta.url;
const THREAD_MODULE = new URL(`./queue-thread${HERE.endsWith('.ts') ? '.ts' : '.js'}`, HERE).href;
const THREAD_ENTRY = new URL(HERE.endsWith('.ts') ? '../bin/thread.mjs' : '../../bin/thread.mjs', HERE);

/** A running trial's thread: `stop` asks it to end its chunk with a checkpoint; `abandon` ends it at once, writing nothing more. */
interface TrialThread {
  done: Promise<TrialRecord | undefined>;
  stop(): void;
  abandon(): void;
}

function startTrialThread(input: Omit<ThreadInput, 'entry'>, onProgress: (p: TrialProgress) => void): TrialThread {
  const thread = new Thread(THREAD_ENTRY, { workerData: { ...input, entry: THREAD_MODULE } satisfies ThreadInput });
  let result: ThreadMessage | undefined;
  const done = new Promise<TrialRecord | undefined>((resolve, reject) => {
    thread.on('message', (m: ThreadMessage) => ('progress' in m ? onProgress(m.progress) : (result = m)));
    thread.on('error', reject);
    thread.on('exit', () => {
      if (result && 'record' in result) resolve(result.record);
      else if (result && 'error' in result) reject(new CnnlabError(result.error));
      else if (result) resolve(undefined);
      else reject(new CnnlabError(`${input.job.trial.id}: the trial's thread ended without a record`));
    });
  });
  return { done, stop: () => thread.postMessage('stop'), abandon: () => void thread.terminate() };
}

/** One job: the trial run in its own thread; its record, or the job handed back when Ctrl-C stopped it. */
async function runJob(o: WorkerOptions, name: string, job: Job<TrialJob>, token: string | undefined, threads: Map<string, TrialThread>): Promise<TrialRecord> {
  const t = startTrialThread({ job: job.data, machine: o.machine ?? {}, name }, (p) => void job.updateProgress(p).catch(() => {}));
  threads.set(job.id!, t);
  if (o.stop.requested) t.stop();
  try {
    const record = await t.done;
    if (record) return record;
  } finally {
    threads.delete(job.id!);
  }
  // Ctrl-C: the checkpoint is saved; another worker resumes it now rather than after the stall timeout.
  await job.moveToWait(token);
  throw new WaitingError();
}

/**
 * Runs a worker until Ctrl-C (or, with untilDone, until the queue is finished and empty); the
 * exit code is the caller's (130/143 after a stop).
 */
export async function runWorker(o: WorkerOptions): Promise<void> {
  const log = o.log ?? ((l: string) => console.log(l));
  const h = await openQueue(o.address);
  const name = `${hostname()}:${process.pid}`;
  const threads = new Map<string, TrialThread>();
  const ms = o.stallSeconds * 1000;
  const worker = new Worker<TrialJob, TrialRecord>(o.address.name, (job, token) => runJob(o, name, job, token, threads), {
    connection: connectionOf(o.address),
    name,
    concurrency: 1,
    lockDuration: ms,
    stalledInterval: Math.min(ms, 30_000),
    maxStalledCount: MAX_LOST_WORKERS,
    removeOnComplete: { count: 1_000_000 },
  });
  // Another worker may have this trial now: its thread stops where it is, writing nothing more.
  worker.on('lockRenewalFailed', (ids: string[]) => ids.forEach((id) => threads.get(id)?.abandon()));
  worker.on('failed', (job, err) => job && !(err instanceof WaitingError) && log(`  ${job.id}: failed: ${err.message}`));
  worker.on('error', (err) => log(`worker ${name}: ${err.message}`));
  log(`worker ${name} on ${o.address.text}: taking trials (stall timeout ${o.stallSeconds} s)`);
  try {
    while (!o.stop.requested) {
      await new Promise((r) => setTimeout(r, 1000));
      if (o.untilDone && (await isFinished(h)) && !(await h.queue.getActiveCount()) && !(await h.queue.getWaitingCount())) break;
    }
    for (const t of threads.values()) t.stop();
  } finally {
    await worker.close();
    await h.close();
  }
  log(o.stop.requested ? `worker ${name}: stopped; its trial (if any) is back in the queue with a checkpoint` : `worker ${name}: the queue is finished`);
}

