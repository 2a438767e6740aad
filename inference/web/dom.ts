/** Small DOM and fetch helpers of the page. */

/** The element with this id (the page's HTML has every id the scripts use). */
export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page lacks #${id}`);
  return el as T;
}

/** A response's body, or an error naming the URL, the status and the server's one line. */
async function ok(url: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${(await res.text()).trim()}`);
  return res;
}

export async function fetchBytes(url: string, init?: RequestInit): Promise<Uint8Array> {
  return new Uint8Array(await (await ok(url, init)).arrayBuffer());
}

export async function fetchJson<T>(url: string): Promise<T> {
  return (await (await ok(url)).json()) as T;
}

/** A base64 string's bytes. */
export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Offers `blob` as a download named by the response's content-disposition (else `fallback`). */
export function saveBlob(blob: Blob, disposition: string | null, fallback: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = disposition?.match(/filename="(.+)"/)?.[1] ?? fallback;
  a.click();
  URL.revokeObjectURL(a.href);
}

/** The argmax of row `i` of a [n, k] array. */
export function argmax(p: ArrayLike<number>, k: number, i = 0): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (p[i * k + j] > p[i * k + best]) best = j;
  return best;
}

/** A line chart of losses on a canvas. */
export function drawLosses(c: HTMLCanvasElement, losses: readonly number[]): void {
  const g = c.getContext('2d')!;
  g.clearRect(0, 0, c.width, c.height);
  if (!losses.length) return;
  const max = Math.max(...losses, 1e-3);
  g.strokeStyle = '#2a6fdb';
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach((v, i) => {
    const x = 8 + ((c.width - 16) * i) / Math.max(1, losses.length - 1);
    const y = c.height - 8 - ((c.height - 24) * v) / max;
    if (i) g.lineTo(x, y);
    else g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = '#5b6570';
  g.font = '12px sans-serif';
  g.fillText(`loss (max ${max.toFixed(2)}), ${losses.length} steps`, 8, 14);
}
