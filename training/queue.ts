/**
 * Sweeps and searches on a Redis queue (BullMQ): the address, the connection, the identity a
 * queue holds, the jobs' data and the status listing. The coordinator (queue-coordinator.ts)
 * enqueues trials and collects their records; workers (queue-worker.ts) run them as normal run
 * folders under a directory every machine sees.
 *
 * BullMQ, because it is the Node ecosystem's maintained Redis queue (weekly releases, used in
 * production at scale) and it already has what a lost machine needs: a job's lock expires when
 * its worker stops renewing it, and another worker's stalled-job check puts the job back in the
 * queue; a job id given at enqueue time makes a re-run enqueue nothing twice.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { type Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { UsageError } from '../common/errors.ts';
import { plural } from '../common/text.ts';
import { recipeDifferences } from './config.ts';
import type { TrainFlags } from './flags.ts';
import { scoreText, type Trial, type TrialRecord } from './sweep.ts';
import type { Space } from './tpe.ts';

/** `redis://HOST:PORT/NAME`: the Redis server and the queue's name. */
export interface QueueAddress {
  /** The server, without the queue's name: redis://[user:pass@]host:port. */
  server: string;
  name: string;
  /** As the user wrote it, password hidden. */
  text: string;
}

/** Parses `--queue redis://HOST:PORT/NAME` (rediss:// for TLS); anything else is one line. */
export function parseQueueAddress(spec: string): QueueAddress {
  const bad = (why: string): never => {
    throw new UsageError(`--queue ${spec}: ${why}; expected redis://HOST:PORT/NAME, e.g. redis://10.0.0.5:6379/mnist-search`);
  };
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return bad('not an address');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') bad(`${url.protocol} is not redis: or rediss:`);
  if (!url.hostname) bad('no host');
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) bad(name ? `the queue name ${name} may hold only letters, digits, '.', '_' and '-'` : 'no queue name after the port');
  const auth = url.username || url.password ? `${url.username}${url.password ? `:${url.password}` : ''}@` : '';
  const hostPort = `${url.hostname}:${url.port || '6379'}`;
  return { server: `${url.protocol}//${auth}${hostPort}`, name, text: `${url.protocol}//${url.username ? `${url.username}@` : ''}${hostPort}/${name}` };
}

/** BullMQ's connection options for an address (no per-request retry limit: workers wait out a restarting Redis). */
export const connectionOf = (a: QueueAddress) => ({ url: a.server, maxRetriesPerRequest: null });

/** A queue and a plain client for cnnlab's own keys beside BullMQ's (under the queue's prefix, so obliterating the queue removes them). */
export interface QueueHandle {
  address: QueueAddress;
  queue: Queue<TrialJob>;
  redis: Redis;
  close(): Promise<void>;
}

/**
 * Opens a queue after checking that its server answers: one line naming it if not (ioredis
 * would otherwise retry forever).
 */
export async function openQueue(a: QueueAddress): Promise<QueueHandle> {
  const redis = new Redis(a.server, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000, retryStrategy: (n) => (n > 3 ? null : 200 * n) });
  let lastError = '';
  redis.on('error', (err: Error) => void (lastError = err.message));
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    throw new UsageError(`--queue ${a.text}: cannot reach Redis (${(lastError || (err as Error).message).split('\n')[0]})`);
  }
  const queue = new Queue<TrialJob>(a.name, { connection: connectionOf(a) });
  return { address: a, queue, redis, close: async () => void (await Promise.all([queue.close(), redis.quit()])) };
}

/** What a queue holds: one sweep or search, fixed by the first coordinator. */
export interface QueueSpec {
  command: 'sweep' | 'search';
  arch: string;
  model?: string;
  archFile?: string;
  /** The shared flags (paths in them absolute). */
  base: TrainFlags;
  /** The sweep folder, absolute: every machine must see it at this path. */
  dir: string;
  /** A sweep's trial ids, or a search's space, algorithm and seed. */
  trials?: string[];
  search?: { space: Space; algo: 'tpe' | 'random'; seed: number };
  force?: boolean;
}

/** A trial as a job: the trial, where it stands, and the spec's fields a worker needs to run it. */
export interface TrialJob {
  trial: Trial;
  index: number;
  total: number;
  spec: QueueSpec;
}

/** The job's progress a worker reports: which epoch of how many. */
export interface TrialProgress {
  epoch: number;
  epochs: number;
}

/** What a worker's trial thread (queue-thread.ts) is given. */
export interface ThreadInput {
  /** bin/thread.mjs imports this module in the thread. */
  entry: string;
  job: TrialJob;
  machine: Pick<TrainFlags, 'ep' | 'threads'>;
  /** The worker's name (hostname:pid), for the record. */
  name: string;
}

/** What the trial thread posts back: epochs as they end, then its record, or that Ctrl-C stopped it, or a one-line error. */
export type ThreadMessage = { progress: TrialProgress } | { record: TrialRecord } | { interrupted: true } | { error: string };

/** Paths in a spec made absolute, so workers started anywhere find the same files. */
export function absolutePaths(s: QueueSpec): QueueSpec {
  const abs = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : resolve(p));
  const base = { ...s.base };
  if (base['data-dir']) base['data-dir'] = abs(base['data-dir']);
  return { ...s, model: abs(s.model), archFile: abs(s.archFile), dir: abs(s.dir)!, base };
}

const specKey = (a: QueueAddress) => `bull:${a.name}:cnnlab-spec`;

/** How two specs differ, in words; empty where they are the same sweep. */
export function specDifferences(held: QueueSpec, given: QueueSpec): string[] {
  const out: string[] = [];
  for (const k of ['command', 'arch', 'model', 'archFile', 'dir'] as const) if (held[k] !== given[k]) out.push(`${k} ${held[k] ?? '(none)'} (asked: ${given[k] ?? '(none)'})`);
  const flags = recipeDifferences(held.base, given.base);
  if (flags.saved.length) out.push(`${flags.saved.join(', ')} (asked: ${flags.wanted.join(', ')})`);
  if (JSON.stringify(held.trials) !== JSON.stringify(given.trials)) out.push(`another grid of ${plural(held.trials?.length ?? 0, 'trial')}`);
  if (JSON.stringify(held.search) !== JSON.stringify(given.search)) out.push(`another search (${JSON.stringify(held.search)})`);
  return out;
}

/**
 * Records the spec in an empty queue, or checks it against the one the queue holds: a queue
 * holding another sweep is one line saying how it differs (the same identity rule as a sweep
 * folder). Returns whether the queue already held it.
 */
export async function claimQueue(h: QueueHandle, spec: QueueSpec): Promise<boolean> {
  const a = h.address;
  if ((await h.redis.set(specKey(a), JSON.stringify(spec), 'NX')) === 'OK') return false;
  const held = (await h.redis.get(specKey(a)))!;
  const diff = specDifferences(JSON.parse(held) as QueueSpec, spec);
  if (diff.length) throw new UsageError(`--queue ${a.text}: the queue holds another ${(JSON.parse(held) as QueueSpec).command}: ${diff.join('; ')}; use another queue name`);
  return true;
}

/** The spec a queue holds, or undefined for an empty queue. */
export async function heldSpec(h: QueueHandle): Promise<QueueSpec | undefined> {
  const held = await h.redis.get(specKey(h.address));
  return held ? (JSON.parse(held) as QueueSpec) : undefined;
}

const finishedKey = (a: QueueAddress) => `bull:${a.name}:cnnlab-finished`;

/** The coordinator marks its queue finished when every trial has a record (workers with --until-done then exit). */
export async function markFinished(h: QueueHandle): Promise<void> {
  await h.redis.set(finishedKey(h.address), '1');
}

export async function isFinished(h: QueueHandle): Promise<boolean> {
  return (await h.redis.get(finishedKey(h.address))) === '1';
}

/** The record of a job that failed (threw outside training's errors, or lost its workers too often). */
export function failedRecord(job: Job<TrialJob>): TrialRecord {
  const { trial, spec } = job.data;
  return { ...trial, status: 'failed', run: join(spec.dir, trial.id), message: job.failedReason ?? 'failed', worker: job.processedBy };
}

const STATES = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'] as const;

/** Every trial job in a queue, by state. */
export async function jobsByState(q: Queue): Promise<Record<(typeof STATES)[number], Job<TrialJob>[]>> {
  const out = {} as Record<(typeof STATES)[number], Job<TrialJob>[]>;
  for (const s of STATES) out[s] = (await q.getJobs([s])).filter(Boolean) as Job<TrialJob>[];
  return out;
}

/**
 * `--status`: the queue's trials as lines: queued, running (which worker, which epoch), done,
 * diverged, invalid, failed.
 */
export async function queueStatus(a: QueueAddress): Promise<string[]> {
  const h = await openQueue(a);
  const q = h.queue;
  try {
    const spec = await heldSpec(h);
    if (!spec) return [`queue ${a.text}: empty (no sweep or search has been enqueued)`];
    const jobs = await jobsByState(q);
    const workers = (await q.getWorkers()).length;
    const records = jobs.completed.sort((x, y) => x.data.index - y.data.index).map((j) => j.returnvalue as TrialRecord);
    const of = (s: string) => records.filter((r) => r.status === s);
    const total = spec.trials?.length ?? Math.max(0, ...Object.values(jobs).flat().map((j) => j.data.total));
    const lines = [`queue ${a.text}: ${spec.command} ${spec.arch}, ${plural(total, 'trial')} -> ${spec.dir}; ${plural(workers, 'worker')} connected${(await isFinished(h)) ? '; finished' : ''}`];
    const queued = [...jobs.waiting, ...jobs.prioritized, ...jobs.delayed].sort((x, y) => x.data.index - y.data.index);
    lines.push(`  queued   ${queued.length}${queued.length ? `: ${queued.map((j) => j.id).join(', ')}` : ''}`);
    lines.push(`  running  ${jobs.active.length}`);
    for (const j of jobs.active) {
      const p = j.progress as Partial<TrialProgress>;
      lines.push(`    ${j.id} on ${j.processedBy ?? '?'}${p?.epoch ? ` (epoch ${p.epoch}/${p.epochs})` : ''}${j.stalledCounter ? `, taken again after ${plural(j.stalledCounter, 'lost worker')}` : ''}`);
    }
    for (const s of ['done', 'diverged', 'invalid'] as const) {
      lines.push(`  ${s.padEnd(8)} ${of(s).length}`);
      for (const r of of(s)) lines.push(`    ${r.id}${s === 'done' ? `: ${scoreText(r)}` : r.message ? `: ${r.message}` : ''}${r.worker ? ` (${r.worker}${r.resumed ? ', resumed' : ''})` : ''}`);
    }
    lines.push(`  failed   ${jobs.failed.length}`);
    for (const j of jobs.failed) lines.push(`    ${j.id}: ${j.failedReason}`);
    return lines;
  } finally {
    await h.close();
  }
}
