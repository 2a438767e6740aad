/**
 * `cnnlab sweep|search ... --queue redis://HOST:PORT/NAME`: enqueues the trials, follows them as
 * workers run them, and writes the sweep folder's sweep.json as a local sweep does. The queue is
 * the state: Ctrl-C leaves it as it is (workers go on), and the same command again enqueues
 * nothing twice (a trial's job id is its trial id) and collects what finished meanwhile.
 */
import { type Job, QueueEvents } from 'bullmq';
import { Rng } from '../common/rng.ts';
import { plural } from '../common/text.ts';
import { absolutePaths, claimQueue, connectionOf, failedRecord, jobsByState, markFinished, openQueue, type QueueAddress, type QueueHandle, type QueueSpec, type TrialJob } from './queue.ts';
import { prepareTrials, scoreText, searchTrial, type SearchOptions, type SweepManifest, type SweepOptions, type Trial, trialId, type TrialRecord, trialScore, writeSweepManifest } from './sweep.ts';
import { type Observation, suggestNew } from './tpe.ts';

export interface QueueRun {
  address: QueueAddress;
  stop: { requested: boolean };
  log?: (line: string) => void;
}

/** How often the coordinator also asks the queue directly, beside its events (a lost event stream costs at most this). */
const POLL_MS = 10_000;

/** Records of watched trials as workers finish them, from the queue's events and a slow poll. */
class Results {
  private readonly events: QueueEvents;
  private readonly watched = new Set<string>();
  private readonly ready: TrialRecord[] = [];
  private wake = () => {};

  constructor(
    private readonly h: QueueHandle,
    private readonly log: (line: string) => void,
  ) {
    this.events = new QueueEvents(h.address.name, { connection: connectionOf(h.address) });
    this.events.on('completed', ({ jobId }) => void this.settle(jobId));
    this.events.on('failed', ({ jobId }) => void this.settle(jobId));
    this.events.on('active', ({ jobId }) => void this.started(jobId));
    this.events.on('stalled', ({ jobId }) => this.watched.has(jobId) && this.log(`  ${jobId}: its worker was lost; back in the queue, to resume from its checkpoint`));
  }

  async open(): Promise<void> {
    await this.events.waitUntilReady();
  }

  watch(id: string): void {
    this.watched.add(id);
  }

  get pending(): number {
    return this.watched.size;
  }

  private async started(id: string): Promise<void> {
    if (!this.watched.has(id)) return;
    const job = await this.h.queue.getJob(id);
    if (job?.processedBy) this.log(`  ${id}: running on ${job.processedBy}${job.attemptsStarted > 1 ? ` (attempt ${job.attemptsStarted})` : ''}`);
  }

  /** Takes a finished job's record (completed: the worker's; failed: one saying why). */
  async settle(id: string): Promise<void> {
    if (!this.watched.has(id)) return;
    const job = (await this.h.queue.getJob(id)) as Job<TrialJob> | undefined;
    const state = job && (await job.getState());
    if (!job || (state !== 'completed' && state !== 'failed') || !this.watched.delete(id)) return;
    this.ready.push(state === 'completed' ? (job.returnvalue as TrialRecord) : failedRecord(job));
    this.wake();
  }

  /** The records that arrived since the last call; waits for at least one unless stopped. */
  async next(stop: { requested: boolean }): Promise<TrialRecord[]> {
    let polled = performance.now();
    while (!this.ready.length && !stop.requested && this.watched.size) {
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 500);
      });
      if (performance.now() - polled > POLL_MS) {
        polled = performance.now();
        for (const id of [...this.watched]) await this.settle(id);
      }
    }
    return this.ready.splice(0);
  }

  close(): Promise<void> {
    return this.events.close();
  }
}

/** One line per finished trial, as the local sweep's counter reads. */
function finishedLine(r: TrialRecord, at: string): string {
  const what = r.status === 'done' ? `done, ${scoreText(r)}` : `${r.status}${r.message ? `: ${r.message}` : ''}`;
  return `${at} ${r.id}: ${what}${r.worker ? ` (${r.worker}${r.resumed ? ', resumed from its checkpoint' : ''})` : ''}`;
}

/** Opens the queue, claims it for the spec, puts failed trials back, and follows its events. */
async function start(q: QueueRun, spec: QueueSpec): Promise<{ h: QueueHandle; results: Results; held: boolean; existing: Job<TrialJob>[] }> {
  const h = await openQueue(q.address);
  try {
    const held = await claimQueue(h, spec);
    const results = new Results(h, q.log ?? console.log);
    await results.open();
    const jobs = await jobsByState(h.queue);
    for (const j of jobs.failed) await j.retry();
    return { h, results, held, existing: Object.values(jobs).flat() };
  } catch (err) {
    await h.close();
    throw err;
  }
}

const jobOf = (t: Trial, index: number, total: number, spec: QueueSpec) => ({ name: 'trial', data: { trial: t, index, total, spec }, opts: { jobId: t.id } });

/**
 * A grid on a queue: every trial enqueued once (an id already there is left as it is), then
 * their records collected as workers finish them; sweep.json written in the sweep folder.
 * Returns undefined where Ctrl-C stopped the waiting (the queue keeps every trial).
 */
export async function runQueuedSweep(o: SweepOptions, q: QueueRun): Promise<SweepManifest | undefined> {
  const log = q.log ?? console.log;
  const spec = absolutePaths({ command: 'sweep', arch: o.arch, model: o.model, archFile: o.archFile, base: o.base, dir: o.dir, trials: o.trials.map((t) => t.id), force: o.force });
  const { h, results, held, existing } = await start(q, spec);
  const records = new Map<string, TrialRecord>();
  try {
    await prepareTrials({ ...o, dir: spec.dir }); // a folder holding another recipe is refused here, before anything is enqueued
    const known = new Set(existing.map((j) => j.id));
    await h.queue.addBulk(o.trials.flatMap((t, k) => (known.has(t.id) ? [] : [jobOf(t, k + 1, o.trials.length, spec)])));
    log(`${held ? 'continuing' : 'enqueued'} ${plural(o.trials.length, 'trial')} on ${q.address.text}`);
    for (const t of o.trials) results.watch(t.id);
    for (const t of o.trials) await results.settle(t.id);
    while (results.pending && !q.stop.requested) {
      for (const r of await results.next(q.stop)) {
        records.set(r.id, r);
        log(finishedLine(r, `[${records.size}/${o.trials.length}]`));
      }
    }
    const manifest: SweepManifest = { arch: o.arch, base: o.base, trials: o.trials.flatMap((t) => records.get(t.id) ?? []) };
    writeSweepManifest(spec.dir, manifest);
    if (records.size < o.trials.length) return undefined;
    await markFinished(h);
    return manifest;
  } finally {
    await results.close();
    await h.close();
  }
}

/**
 * An asynchronous search on a queue: up to `parallel` trials in flight (default: the workers
 * connected, re-read as results arrive); each new point is proposed from the finished trials plus
 * the running ones counted at the worst loss seen so far (the constant liar), so TPE never proposes a point
 * already running. A re-run takes the queue's trials as its history and goes on to `trials`.
 */
export async function runQueuedSearch(o: SearchOptions & { parallel?: number }, q: QueueRun): Promise<SweepManifest | undefined> {
  const log = q.log ?? console.log;
  const spec = absolutePaths({ command: 'search', arch: o.arch, model: o.model, archFile: o.archFile, base: o.base, dir: o.dir, search: { space: o.space, algo: o.algo, seed: o.seed }, force: o.force });
  const { h, results, existing } = await start(q, spec);
  const trials = existing.map((j) => j.data.trial).sort((a, b) => a.id.localeCompare(b.id));
  const records = new Map<string, TrialRecord>();
  const rng = Rng.seeded(o.seed + trials.length);
  try {
    for (const t of trials) results.watch(t.id);
    for (const t of trials) await results.settle(t.id);
    let exhausted = false;
    while (!q.stop.requested) {
      const parallel = o.parallel ?? Math.max(1, (await h.queue.getWorkers()).length);
      while (!exhausted && trials.length < o.trials && results.pending < parallel) {
        const t = propose(o, trials, records, rng);
        if (!t) exhausted = true;
        else {
          await prepareTrials({ ...o, trials: [t], dir: spec.dir });
          await h.queue.add('trial', { trial: t, index: trials.length + 1, total: o.trials, spec }, { jobId: t.id });
          trials.push(t);
          results.watch(t.id);
          log(`[${trials.length}/${o.trials}] ${t.id}: queued`);
        }
      }
      if (!results.pending) break;
      for (const r of await results.next(q.stop)) {
        records.set(r.id, r);
        log(finishedLine(r, `[${records.size}/${o.trials} finished]`));
      }
    }
    if (exhausted) log(`the space has no point left that no trial ran: ${trials.length} trials`);
    const manifest: SweepManifest = { arch: o.arch, base: o.base, trials: trials.flatMap((t) => records.get(t.id) ?? []) };
    writeSweepManifest(spec.dir, manifest);
    if (results.pending || q.stop.requested) return undefined;
    await markFinished(h);
    return manifest;
  } finally {
    await results.close();
    await h.close();
  }
}

/** The next trial: TPE's (or a random) point given the finished trials and the running ones at the worst loss; undefined where only points already tried are left. */
function propose(o: SearchOptions, trials: Trial[], records: Map<string, TrialRecord>, rng: Rng): Trial | undefined {
  const loss = (r: TrialRecord) => (r.status === 'done' ? 1 - trialScore(r) : 1);
  const finished: Observation[] = trials.flatMap((t) => (records.has(t.id) ? [{ point: t.settings, loss: loss(records.get(t.id)!) }] : []));
  const liar = finished.length ? Math.max(...finished.map((f) => f.loss)) : 1;
  const running: Observation[] = trials.filter((t) => !records.has(t.id)).map((t) => ({ point: t.settings, loss: liar }));
  const point = suggestNew(o.space, [...finished, ...running], rng, o.algo);
  const body = trialId('grid', point);
  if (trials.some((t) => trialId('grid', t.settings) === body)) return undefined;
  return searchTrial(trials.length + 1, point, o.algo);
}
