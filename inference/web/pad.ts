/** The drawing pad (digit models): live predictions while drawing, one in flight at a time. */
import { $ } from './dom.ts';
import { predict, prepare, setStatus, showHint } from './predict.ts';

const pad = $<HTMLCanvasElement>('pad');
const ctx = pad.getContext('2d')!;
let drawing = false;
let last: [number, number] = [0, 0];
let version = 0; // bumped by every stroke
let shown = 0; // the version of the drawing last predicted
let inflight: Promise<void> | null = null;

export function clearPad(): void {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
  showHint();
  shown = version;
}

function point(e: PointerEvent): [number, number] {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
}

function stroke(a: [number, number], b: [number, number]): void {
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 20;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(a[0], a[1]);
  ctx.lineTo(b[0], b[1]);
  ctx.stroke();
  version++;
}

/** Live predictions while drawing: when one lands, the newest drawing is predicted if it changed. */
function predictPad(): Promise<void> {
  if (inflight) return inflight;
  const v = version;
  inflight = new Promise<Blob | null>((resolve) => pad.toBlob(resolve, 'image/png'))
    .then((blob) => prepare(blob!))
    .then(({ pixels, shape }) => predict(pixels, shape))
    .then(() => setStatus(''))
    .catch((err: Error) => setStatus(err.message))
    .finally(() => {
      shown = v;
      inflight = null;
      if (shown !== version && !drawing) void predictPad();
    });
  return inflight;
}

/** Resolves once the prediction on screen is of the drawing on screen (for tests). */
export async function settled(): Promise<void> {
  while (inflight || shown !== version || drawing) await (inflight ?? new Promise((r) => setTimeout(r, 20)));
}

/** Wires the pad's pointer events and its Clear button. */
export function setUpPad(): void {
  pad.addEventListener('pointerdown', (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    last = point(e);
    stroke(last, last);
  });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const p = point(e);
    stroke(last, p);
    last = p;
  });
  for (const ev of ['pointerup', 'pointercancel'] as const) {
    pad.addEventListener(ev, () => {
      drawing = false;
      void predictPad();
    });
  }
  setInterval(() => {
    if (drawing && shown !== version) void predictPad();
  }, 150);
  $('clear').addEventListener('click', clearPad);
}
