/** Thrown when a lane's queue is full: the server answers 503 with Retry-After. */
export class LaneFull extends Error {}

/**
 * At most `concurrency` jobs run at once and `queue` more wait; past that a job is refused at
 * once (LaneFull). Image decoding goes through these so a flood of huge images neither eats the
 * memory nor delays the ordinary uploads, which have a lane of their own.
 */
export class DecodeLane {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly concurrency: number,
    readonly queue: number,
  ) {}

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.queue) throw new LaneFull(`${this.running} decoding, ${this.waiting.length} waiting`);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
