import { existsSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { appendWhole, ensureDir } from '../common/files.ts';
import { createRequire } from 'node:module';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const CRC32C = require('crc-32/crc32c') as { buf: (data: Uint8Array, seed?: number) => number };

// The messages of tensorflow/core/util/event.proto and summary.proto that scalars, images and histograms need.
const root = protobuf.Root.fromJSON({
  nested: {
    Event: { fields: { wallTime: { type: 'double', id: 1 }, step: { type: 'int64', id: 2 }, fileVersion: { type: 'string', id: 3 }, summary: { type: 'Summary', id: 5 } } },
    Summary: { fields: { value: { rule: 'repeated', type: 'SummaryValue', id: 1 } } },
    SummaryValue: {
      fields: { tag: { type: 'string', id: 1 }, simpleValue: { type: 'float', id: 2 }, image: { type: 'SummaryImage', id: 4 }, histo: { type: 'HistogramProto', id: 5 } },
    },
    SummaryImage: { fields: { height: { type: 'int32', id: 1 }, width: { type: 'int32', id: 2 }, colorspace: { type: 'int32', id: 3 }, encodedImageString: { type: 'bytes', id: 4 } } },
    HistogramProto: {
      fields: {
        min: { type: 'double', id: 1 },
        max: { type: 'double', id: 2 },
        num: { type: 'double', id: 3 },
        sum: { type: 'double', id: 4 },
        sumSquares: { type: 'double', id: 5 },
        bucketLimit: { rule: 'repeated', type: 'double', id: 6, options: { packed: true } },
        bucket: { rule: 'repeated', type: 'double', id: 7, options: { packed: true } },
      },
    },
  },
});
const Event = root.lookupType('Event');

/** TFRecord's masked CRC32C. */
function maskedCrc(data: Uint8Array): number {
  const crc = CRC32C.buf(data) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function record(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc(data), true);
  return out;
}

/** Appends scalar summaries to a TensorBoard event file (`tensorboard --logdir runs/`). */
export class TensorBoardWriter {
  readonly path: string;
  /** Bytes in the file after the last complete record: a checkpoint stores it. */
  size: number;

  /**
   * A new event file in `dir`, or, resuming, the run's file cut back to `size` bytes (what it
   * held at the checkpoint), so the redone steps are not logged twice.
   */
  constructor(dir: string, resume?: { file: string; size: number }) {
    ensureDir(dir);
    if (resume) {
      this.path = join(dir, basename(resume.file));
      const onDisk = existsSync(this.path) ? statSync(this.path).size : 0;
      if (onDisk > resume.size) truncateSync(this.path, resume.size);
      this.size = Math.min(onDisk, resume.size);
      if (this.size === 0) this.write({ wallTime: Date.now() / 1000, step: 0, fileVersion: 'brain.Event:2' });
    } else {
      // A fresh run replaces the log of an earlier attempt in the same folder.
      for (const f of readdirSync(dir)) if (/^events\.out\.tfevents\..*\.cnnlab$/.test(f)) rmSync(join(dir, f));
      this.path = join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.cnnlab`);
      this.size = 0;
      this.write({ wallTime: Date.now() / 1000, step: 0, fileVersion: 'brain.Event:2' });
    }
  }

  private write(event: Record<string, unknown>): void {
    const bytes = record(Event.encode(Event.create(event)).finish());
    appendWhole(this.path, bytes);
    this.size += bytes.length;
  }

  scalars(step: number, values: Record<string, number>): void {
    const value = Object.entries(values).map(([tag, simpleValue]) => ({ tag, simpleValue }));
    this.write({ wallTime: Date.now() / 1000, step, summary: { value } });
  }

  /** A PNG (TensorBoard's Images tab). */
  image(step: number, tag: string, png: Uint8Array, width: number, height: number): void {
    this.write({ wallTime: Date.now() / 1000, step, summary: { value: [{ tag, image: { height, width, colorspace: 4, encodedImageString: png } }] } });
  }

  /** The distribution of each named tensor's values, 30 equal-width buckets (the Histograms tab). */
  histograms(step: number, tensors: Map<string, Float32Array>): void {
    const value = [...tensors].map(([tag, v]) => ({ tag, histo: histogram(v) }));
    this.write({ wallTime: Date.now() / 1000, step, summary: { value } });
  }
}

function histogram(v: Float32Array, buckets = 30) {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let sumSquares = 0;
  for (const x of v) {
    min = Math.min(min, x);
    max = Math.max(max, x);
    sum += x;
    sumSquares += x * x;
  }
  const width = (max - min) / buckets || 1;
  const counts = new Array<number>(buckets).fill(0);
  for (const x of v) counts[Math.min(buckets - 1, Math.floor((x - min) / width))]++;
  // Right edges; the last reaches past the maximum so every value lies below a limit.
  const bucketLimit = counts.map((_, i) => (i === buckets - 1 ? max + width * 1e-6 : min + (i + 1) * width));
  return { min, max, num: v.length, sum, sumSquares, bucketLimit, bucket: counts };
}

/** Every event's summaries, decoded (tests). */
export function readEvents(bytes: Uint8Array): { step: number; summary?: { value?: Record<string, unknown>[] } }[] {
  const out: { step: number; summary?: { value?: Record<string, unknown>[] } }[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let pos = 0; pos + 12 <= bytes.length; ) {
    const len = Number(view.getBigUint64(pos, true));
    out.push(Event.toObject(Event.decode(bytes.subarray(pos + 12, pos + 12 + len)), { longs: Number }) as { step: number });
    pos += 12 + len + 4;
  }
  return out;
}

/** Reads the scalars back (tests, and `cnnlab report`). */
export function readScalars(bytes: Uint8Array): { step: number; tag: string; value: number }[] {
  const out: { step: number; tag: string; value: number }[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos + 12 <= bytes.length) {
    const len = Number(view.getBigUint64(pos, true));
    if (view.getUint32(pos + 8, true) !== maskedCrc(bytes.subarray(pos, pos + 8))) throw new Error(`event file: bad length checksum at byte ${pos}`);
    const data = bytes.subarray(pos + 12, pos + 12 + len);
    if (data.length !== len || view.getUint32(pos + 12 + len, true) !== maskedCrc(data)) throw new Error(`event file: bad record at byte ${pos}`);
    const e = Event.toObject(Event.decode(data), { longs: Number }) as { step?: number; summary?: { value?: { tag: string; simpleValue: number }[] } };
    for (const v of e.summary?.value ?? []) if (typeof v.simpleValue === 'number') out.push({ step: e.step ?? 0, tag: v.tag, value: v.simpleValue });
    pos += 12 + len + 4;
  }
  return out;
}
